"""Train-then-compile: replace every Sinkhorn attention of a trained teacher by a calibrated ASAP normaliser.

The operating point (slices ``L`` and direction kind) is either given or chosen on **held-out calibration
batches** by a stated rule (:func:`choose_operating_point`), never on test data.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from asap.compile.calibration import calibration_pairs, principal_directions
from asap.compile.capture import AttentionInputs, capture_attention_inputs, sinkhorn_layers
from asap.compile.fit import fit_dual_map, predict, r_squared, relative_error
from asap.nn import ASAP, Attention, attention_layers

DIRECTIONS = ("random", "pca")
SLICE_FACTORS = (0.25, 0.5, 1, 2, 4)  # candidate L = factor x head dim
RELATIVE_TOLERANCE = 0.10  # a candidate qualifies within 10% ...
ABSOLUTE_TOLERANCE = 0.005  # ... plus 0.005 of the best held-out plan error
OPERATING_POINT_RULE = (
    f"the fewest slices among candidates whose held-out calibration plan error (mean over layers and heads) is "
    f"at most best x {1 + RELATIVE_TOLERANCE:g} + {ABSOLUTE_TOLERANCE:g}; ties by lower error"
)


@dataclass(frozen=True)
class OperatingPoint:
    """Where ASAP runs: ``slices`` per head, ``directions`` kind, and whether rows are rebuilt exactly."""

    slices: int
    directions: str
    two_sided: bool = True

    @property
    def name(self) -> str:
        return f"L{self.slices}_{self.directions}_{'two' if self.two_sided else 'one'}_sided"

    def to_dict(self) -> dict:
        return asdict(self)


def slice_candidates(head_dim: int, factors: Sequence[float] = SLICE_FACTORS) -> list[int]:
    """``L`` in ``{d/4, d/2, d, 2d, 4d}`` (at least 1 slice, no repeats), ascending."""
    return sorted({max(1, round(factor * head_dim)) for factor in factors})


def _calibrate_layer(
    layer: Attention,
    fitting: list[AttentionInputs],
    holdout: list[AttentionInputs],
    point: OperatingPoint,
    map: str,  # noqa: A002
    ridge: float,
    seed: int,
) -> ASAP:
    """An ASAP normaliser for one Sinkhorn layer: directions, ridge/MLP map on ``fitting``, held-out scores."""
    teacher = layer.normaliser
    asap = ASAP(layer.num_heads, layer.head_dim, point.slices, point.two_sided, map, seed).to(layer.qkv.weight.device)
    if point.directions == "pca":
        asap.directions.copy_(principal_directions(fitting, point.slices, seed))
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
    return asap


@torch.no_grad()
def compile_candidates(
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    points: Sequence[OperatingPoint],
    map: str = "linear",  # noqa: A002
    num_batches: int = 8,
    holdout_batches: int = 2,
    ridge: float = 1e-4,
    seed: int = 0,
) -> dict[OperatingPoint, nn.Module]:
    """One compiled copy of ``model`` per operating point, all calibrated on the same batches (captured once):
    the first ``num_batches`` fit the maps, the next ``holdout_batches`` score them."""
    if holdout_batches < 1 or num_batches < 1:
        raise ValueError("calibration needs at least one fitting batch and one held-out batch")
    for point in points:
        if point.directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {point.directions!r}")
        if point.slices < 1:
            raise ValueError(f"slices must be >= 1, got {point.slices}")
    layers = sinkhorn_layers(model)
    if not layers:
        raise ValueError("the model has no Sinkhorn attention layer: ASAP compiles a trained Sinkhorn teacher")
    captured = capture_attention_inputs(model, calib_loader, layers, num_batches + holdout_batches)
    compiled = {}
    for point in points:
        student = copy.deepcopy(model).eval()
        for name, layer in sinkhorn_layers(student).items():
            fitting, holdout = captured[name][:num_batches], captured[name][num_batches:]
            layer.set_normaliser(_calibrate_layer(layer, fitting, holdout, point, map, ridge, seed))
        compiled[point] = student
    return compiled


def choose_operating_point(
    errors: dict[OperatingPoint, float],
    relative_tolerance: float = RELATIVE_TOLERANCE,
    absolute_tolerance: float = ABSOLUTE_TOLERANCE,
) -> OperatingPoint:
    """The rule: among the candidates whose held-out plan error is at most
    ``best * (1 + relative_tolerance) + absolute_tolerance``, the one with the fewest slices (the cheapest),
    then the lowest error (direction kinds cost the same).

    >>> a, b = OperatingPoint(4, "random"), OperatingPoint(16, "random")
    >>> choose_operating_point({a: 0.104, b: 0.100}).slices
    4
    >>> choose_operating_point({a: 0.20, b: 0.10}).slices
    16
    """
    if not errors:
        raise ValueError("no candidate operating point to choose from")
    best = min(errors.values())
    qualified = [p for p, e in errors.items() if e <= best * (1 + relative_tolerance) + absolute_tolerance]
    return min(qualified, key=lambda p: (p.slices, errors[p]))


def heldout_plan_error(model: nn.Module) -> float:
    """Mean over ASAP layers and heads of the held-out relative plan error stored by calibration."""
    return float(calibration_report(model)["plan_error"].mean())


@torch.no_grad()
def select_operating_point(
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    slices: Sequence[int] | None = None,
    directions: Sequence[str] = DIRECTIONS,
    two_sided: bool = True,
    map: str = "linear",  # noqa: A002
    num_batches: int = 8,
    holdout_batches: int = 2,
    ridge: float = 1e-4,
    seed: int = 0,
) -> tuple[nn.Module, OperatingPoint, pd.DataFrame]:
    """Calibrate every candidate (``slices``, default :func:`slice_candidates` of the head dim, times
    ``directions``) on the same batches and keep the one :func:`choose_operating_point` picks on the
    held-out calibration batches. Returns the compiled model, its operating point and the candidates table."""
    slices = slices or slice_candidates(teacher_head_dim(model))
    points = [OperatingPoint(count, kind, two_sided) for count in slices for kind in directions]
    compiled = compile_candidates(model, calib_loader, points, map, num_batches, holdout_batches, ridge, seed)
    chosen = choose_operating_point({point: heldout_plan_error(student) for point, student in compiled.items()})
    return compiled[chosen], chosen, candidates_table(compiled, chosen)


@torch.no_grad()
def compile(  # noqa: A001 - the paper's verb; shadows the builtin only inside this module
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    slices: int | str | None = None,
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
        slices: ``L`` slice directions per head (default: the head dimension), or ``"auto"``: every ``L`` of
            :func:`slice_candidates`, chosen by :func:`select_operating_point` on the held-out batches.
        map: ``"linear"`` or ``"mlp"``.
        two_sided: rebuild rows exactly as well (``softmax_j(S + g)``) rather than columns only.
        directions: ``"random"`` (seeded orthonormal), ``"pca"`` (principal directions of the calibration
            queries and keys, per head) or ``"auto"`` (both, chosen as for ``slices``).
    """
    if directions not in (*DIRECTIONS, "auto"):
        raise ValueError(f"directions must be one of {(*DIRECTIONS, 'auto')}, got {directions!r}")
    options = dict(two_sided=two_sided, map=map, num_batches=num_batches, holdout_batches=holdout_batches)
    options.update(ridge=ridge, seed=seed)
    kinds = DIRECTIONS if directions == "auto" else (directions,)
    if slices == "auto" or directions == "auto":
        counts = None if slices == "auto" else [slices or teacher_head_dim(model)]
        return select_operating_point(model, calib_loader, counts, kinds, **options)[0]
    if isinstance(slices, str):
        raise ValueError(f"slices must be a positive integer, None or 'auto', got {slices!r}")
    point = OperatingPoint(slices or teacher_head_dim(model), directions, two_sided)
    options.pop("two_sided")
    return compile_candidates(model, calib_loader, [point], **options)[point]


def teacher_head_dim(model: nn.Module) -> int:
    """The head dimension of the model's Sinkhorn attention layers (the teacher's)."""
    layers = sinkhorn_layers(model)
    if not layers:
        raise ValueError("the model has no Sinkhorn attention layer: ASAP compiles a trained Sinkhorn teacher")
    return next(iter(layers.values())).head_dim


def candidates_table(compiled: dict[OperatingPoint, nn.Module], chosen: OperatingPoint | None) -> pd.DataFrame:
    """One row per candidate: its operating point, held-out plan error and R^2 (means over layers and heads)."""
    rows = []
    for point, student in compiled.items():
        report = calibration_report(student)
        rows.append(
            {
                **point.to_dict(),
                "heldout_plan_error": report["plan_error"].mean(),
                "heldout_r2": report["r2"].mean(),
                "chosen": point == chosen,
            }
        )
    return pd.DataFrame(rows)


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


def with_two_sided(model: nn.Module, two_sided: bool) -> nn.Module:
    """A copy of a compiled model that rebuilds rows exactly (two-sided) or columns exactly (one-sided);
    the maps are shared calibration, only the final c-transform differs."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, ASAP):
            module.two_sided = two_sided
    return copied


def without_dual_map(model: nn.Module) -> nn.Module:
    """A copy of a compiled model whose maps predict ``f = 0`` (ablation: what the map buys)."""
    ablated = copy.deepcopy(model)
    for module in ablated.modules():
        if isinstance(module, ASAP):
            for parameter in module.dual_map.parameters():
                parameter.data.zero_()
    return ablated
