"""Train-then-compile: replace every Sinkhorn attention of a trained teacher by a calibrated ASAP normaliser."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import pandas as pd
import torch
from torch import Tensor, nn

from asap.compile.calibration import calibration_pairs, principal_directions
from asap.compile.capture import capture_attention_inputs, sinkhorn_layers
from asap.compile.fit import fit_dual_map, predict, r_squared, relative_error
from asap.nn import ASAP, attention_layers

DIRECTIONS = ("random", "pca")


@torch.no_grad()
def compile(  # noqa: A001 - the paper's verb; shadows the builtin only inside this module
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    slices: int | None = None,
    map: str = "linear",  # noqa: A002
    two_sided: bool = True,
    directions: str = "random",
    num_batches: int = 8,
    holdout_batches: int = 2,
    ridge: float = 1e-4,
    seed: int = 0,
) -> nn.Module:
    """A copy of ``model`` with every Sinkhorn attention replaced by ASAP, calibrated on ``calib_loader``.

    For each Sinkhorn layer and head: collect the sliced 1-D potentials of the queries (features) and the
    teacher's query dual (target) on ``num_batches`` batches, fit the map (``"linear"``: closed-form ridge;
    ``"mlp"``: ridge then a small residual MLP), and score it on ``holdout_batches`` further batches (held-out
    R^2 and relative plan error, stored in the layer's ``r2``/``plan_error`` buffers; see
    :func:`calibration_report`). The teacher is left untouched; the weights of the copy are the teacher's.

    Args:
        slices: ``L`` slice directions per head (default: the head dimension).
        map: ``"linear"`` or ``"mlp"``.
        two_sided: rebuild rows exactly as well (``softmax_j(S + g)``) rather than columns only.
        directions: ``"random"`` (seeded orthonormal) or ``"pca"`` (principal directions of the calibration
            queries and keys, per head).
    """
    if directions not in DIRECTIONS:
        raise ValueError(f"directions must be one of {DIRECTIONS}, got {directions!r}")
    if holdout_batches < 1 or num_batches < 1:
        raise ValueError("calibration needs at least one fitting batch and one held-out batch")
    student = copy.deepcopy(model).eval()
    layers = sinkhorn_layers(student)
    if not layers:
        raise ValueError("the model has no Sinkhorn attention layer: ASAP compiles a trained Sinkhorn teacher")
    captured = capture_attention_inputs(student, calib_loader, layers, num_batches + holdout_batches)

    for name, layer in layers.items():
        teacher = layer.normaliser
        fitting, holdout = captured[name][:num_batches], captured[name][num_batches:]
        num_slices = slices or layer.head_dim
        asap = ASAP(layer.num_heads, layer.head_dim, num_slices, two_sided, map, seed).to(layer.qkv.weight.device)
        if directions == "pca":
            asap.directions.copy_(principal_directions(fitting, num_slices, seed))
        features, targets = calibration_pairs(fitting, asap.directions, teacher.n_iters)
        fit_dual_map(asap.dual_map, features, targets, ridge, seed=seed)
        asap.calibrated.fill_(True)

        held_features, held_targets = calibration_pairs(holdout, asap.directions, teacher.n_iters)
        asap.r2.copy_(r_squared(predict(asap.dual_map, held_features), held_targets))
        asap.plan_error.copy_(
            relative_error(
                [asap.weights(batch.q, batch.k, batch.mask) for batch in holdout],
                [teacher.weights(batch.q, batch.k, batch.mask) for batch in holdout],
            )
        )
        layer.set_normaliser(asap)
    return student


def calibration_report(model: nn.Module) -> pd.DataFrame:
    """One row per (ASAP layer, head): held-out R^2 of the dual map and relative plan error vs the teacher."""
    rows = []
    for name, module in attention_layers(model).items():
        if isinstance(module.normaliser, ASAP):
            normaliser = module.normaliser
            for head in range(module.num_heads):
                rows.append(
                    {
                        "layer": name,
                        "head": head,
                        "r2": float(normaliser.r2[head]),
                        "plan_error": float(normaliser.plan_error[head]),
                        "slices": normaliser.directions.shape[-1],
                        "map": normaliser.dual_map_kind,
                        "two_sided": normaliser.two_sided,
                    }
                )
    if not rows:
        raise ValueError("the model has no ASAP attention layer")
    return pd.DataFrame(rows)


def without_dual_map(model: nn.Module) -> nn.Module:
    """A copy of a compiled model whose maps predict ``f = 0`` (ablation: what the map buys)."""
    ablated = copy.deepcopy(model)
    for module in ablated.modules():
        if isinstance(module, ASAP):
            for parameter in module.dual_map.parameters():
                parameter.data.zero_()
    return ablated
