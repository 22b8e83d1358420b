"""Train-then-compile: replace every Sinkhorn attention of a trained teacher by a calibrated ASAP normaliser.

The operating point (slices ``L`` and direction kind) is either given or chosen on **held-out calibration
batches** by a stated rule (:func:`choose_operating_point`), never on test data.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from asap.compiler.calibration import batch_features, calibration_pairs, principal_directions
from asap.compiler.capture import AttentionInputs, capture_attention_inputs, sinkhorn_layers
from asap.compiler.fit import (
    FITS,
    TeacherPlan,
    fit_dual_map,
    fit_dual_map_to_plans,
    plan_scores,
    predict,
    r_squared,
    teacher_plan,
)
from asap.nn import ASAP, DUAL_MAPS, Attention, Sinkhorn, attention_layers
from asap.nn.normalisers import CALIBRATION_SCORES, SIDES
from asap.ops import check_dual_features
from asap.ops.masking import pair_mask

DIRECTIONS = ("random", "pca")
SLICE_FACTORS = (0.25, 0.5, 1, 2, 4)  # candidate L = factor x head dim
RELATIVE_TOLERANCE = 0.10  # a candidate qualifies within 10% ...
ABSOLUTE_TOLERANCE = 0.005  # ... plus 0.005 of the best held-out plan error
OPERATING_POINT_RULE = (
    f"the fewest slices among candidates (ridge maps) whose held-out calibration plan error (mean over layers "
    f"and heads) is at most best x {1 + RELATIVE_TOLERANCE:g} + {ABSOLUTE_TOLERANCE:g}; ties by lower error; "
    f"the chosen point is then fitted with the requested objective"
)


@dataclass(frozen=True)
class OperatingPoint:
    """Where and how ASAP runs: ``slices`` per head, ``directions`` kind, the side that is rebuilt exactly
    (``two_sided``: ``True`` rows, ``False`` columns, ``"auto"`` chosen per head on held-out calibration
    batches), the map's objective (``fit``: ``"ridge"`` on the dual, ``"kl"`` on the plans) and its inputs
    (``features``: :data:`asap.ops.DUAL_FEATURES`)."""

    slices: int
    directions: str
    two_sided: bool | str = True
    fit: str = "ridge"
    features: str = "sliced"

    @property
    def name(self) -> str:
        side = {True: "two", False: "one"}.get(self.two_sided, self.two_sided)
        extra = "" if self.features == "sliced" else "_" + self.features.removeprefix("sliced+")
        return f"L{self.slices}_{self.directions}_{side}_sided_{self.fit}{extra}"

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {self.directions!r}")
        if self.slices < 1:
            raise ValueError(f"slices must be >= 1, got {self.slices}")
        if not (isinstance(self.two_sided, bool) or self.two_sided == "auto"):
            raise ValueError(f"two_sided must be one of {SIDES}, got {self.two_sided!r}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        check_dual_features(self.features)


def slice_candidates(head_dim: int, factors: Sequence[float] = SLICE_FACTORS) -> list[int]:
    """``L`` in ``{d/4, d/2, d, 2d, 4d}`` (at least 1 slice, no repeats), ascending."""
    return sorted({max(1, round(factor * head_dim)) for factor in factors})


@dataclass
class _Slicing:
    """What every operating point with the same ``(slices, directions, features)`` shares on one layer: the
    directions, the features of the fitting and held-out batches, the ridge map and its held-out R^2, and the KL
    maps by side."""

    directions: Tensor
    features: list[Tensor]
    heldout_features: list[Tensor]
    ridge_map: nn.Module
    ridge_r2: Tensor
    heldout_pairs: tuple[Tensor, Tensor]
    kl_maps: dict[bool, nn.Module] = field(default_factory=dict)


def side_per_head(scores: dict[bool, tuple[Tensor, Tensor]], two_sided: bool | str) -> Tensor:
    """Per head, the side of the final c-transform: ``True`` (rows exact) or ``False`` (columns exact), as fixed
    by ``two_sided``, or with ``"auto"`` the side with the lower held-out plan error (ties: two-sided).
    ``scores[side]`` is ``(plan_error, kl)`` per head (:func:`asap.compiler.fit.plan_scores`)."""
    if two_sided == "auto":
        return scores[True][0] <= scores[False][0]
    if not isinstance(two_sided, bool):
        raise ValueError(f"two_sided must be True, False or 'auto', got {two_sided!r}")
    return torch.full_like(scores[True][0], two_sided, dtype=torch.bool)


class _LayerCalibration:
    """One Sinkhorn layer's calibration batches and everything operating points on it can share (computed when
    first needed): the teacher's plans, and per ``(slices, directions, features)`` a :class:`_Slicing`."""

    def __init__(
        self, layer: Attention, fitting: list[AttentionInputs], holdout: list[AttentionInputs], options: dict
    ) -> None:
        self.layer, self.fitting, self.holdout = layer, fitting, holdout
        self.n_iters = layer.normaliser.n_iters
        self.map, self.ridge, self.seed = options["map"], options["ridge"], options["seed"]
        self.kl_options = options["kl_options"]
        self._plans: dict[str, list[TeacherPlan]] = {}
        self._slicings: dict[tuple[int, str, str], _Slicing] = {}

    def plans(self, split: str) -> list[TeacherPlan]:
        if split not in self._plans:
            batches = self.fitting if split == "fitting" else self.holdout
            self._plans[split] = [teacher_plan(b.q, b.k, pair_mask(b.mask), self.n_iters) for b in batches]
        return self._plans[split]

    def slicing(self, point: OperatingPoint) -> _Slicing:
        key = point.slices, point.directions, point.features
        if key not in self._slicings:
            template = self.new_normaliser(point)
            if point.directions == "pca":
                template.directions.copy_(principal_directions(self.fitting, point.slices, self.seed))
            features = batch_features(self.fitting, template.directions, point.features)
            heldout_features = batch_features(self.holdout, template.directions, point.features)
            pooled, targets = calibration_pairs(self.fitting, features, self.n_iters)
            fit_dual_map(template.dual_map, pooled, targets, self.ridge, seed=self.seed)
            held = calibration_pairs(self.holdout, heldout_features, self.n_iters)
            self._slicings[key] = _Slicing(
                template.directions,
                features,
                heldout_features,
                template.dual_map,
                r_squared(predict(template.dual_map, held[0]), held[1]),
                held,
            )
        return self._slicings[key]

    def kl_map(self, slicing: _Slicing, side: bool) -> nn.Module:
        if side not in slicing.kl_maps:
            slicing.kl_maps[side] = fit_dual_map_to_plans(
                slicing.ridge_map,
                slicing.features,
                self.plans("fitting"),
                slicing.heldout_features,
                self.plans("holdout"),
                side,
                **self.kl_options,
            )
        return slicing.kl_maps[side]

    def new_normaliser(self, point: OperatingPoint) -> ASAP:
        layer = self.layer
        return ASAP(
            layer.num_heads, layer.head_dim, point.slices, point.two_sided, self.map, self.seed, features=point.features
        ).to(layer.qkv.weight.device)

    def normaliser(self, point: OperatingPoint) -> ASAP:
        """A calibrated ASAP normaliser at ``point``, with its held-out scores (:data:`CALIBRATION_SCORES`)."""
        slicing = self.slicing(point)
        heldout = slicing.heldout_features, self.plans("holdout")
        ridge = {side: plan_scores(slicing.ridge_map, *heldout, side) for side in (True, False)}
        maps = {True: slicing.ridge_map, False: slicing.ridge_map}
        scores = dict(ridge)
        if point.fit == "kl":
            fitted_sides = (True, False) if point.two_sided == "auto" else (point.two_sided,)
            maps.update({side: self.kl_map(slicing, side) for side in fitted_sides})
            scores = {side: plan_scores(maps[side], *heldout, side) for side in (True, False)}
        chosen = side_per_head(scores, point.two_sided)

        def per_head(values: dict[bool, Tensor]) -> Tensor:
            return torch.where(chosen, values[True], values[False])

        asap = self.new_normaliser(point)
        asap.directions.copy_(slicing.directions)
        with torch.no_grad():
            for name, parameter in asap.dual_map.named_parameters():
                sides = {side: dict(maps[side].named_parameters())[name] for side in (True, False)}
                shape = (-1,) + (1,) * (parameter.ndim - 1)
                parameter.copy_(torch.where(chosen.view(shape), sides[True], sides[False]))
        asap.head_two_sided.copy_(chosen)
        asap.calibrated.fill_(True)
        held_features, held_targets = slicing.heldout_pairs
        values = {
            "r2": r_squared(predict(asap.dual_map, held_features), held_targets),
            "plan_error": per_head({side: scores[side][0] for side in scores}),
            "kl": per_head({side: scores[side][1] for side in scores}),
            "ridge_r2": slicing.ridge_r2,
            "ridge_plan_error": per_head({side: ridge[side][0] for side in ridge}),
            "ridge_kl": per_head({side: ridge[side][1] for side in ridge}),
            "two_sided_plan_error": scores[True][0],
            "one_sided_plan_error": scores[False][0],
        }
        for score in CALIBRATION_SCORES:
            getattr(asap, score).copy_(values[score])
        return asap


def layer_calibrations(
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    map: str = "linear",  # noqa: A002
    num_batches: int = 8,
    holdout_batches: int = 2,
    ridge: float = 1e-4,
    seed: int = 0,
    kl_options: dict[str, Any] | None = None,
) -> dict[str, _LayerCalibration]:
    """Per Sinkhorn layer of ``model``, its calibration batches, captured once: the first ``num_batches`` fit
    the maps, the next ``holdout_batches`` score them (and early-stop the KL fits, and choose the sides of
    ``two_sided="auto"``). ``kl_options`` go to :func:`asap.compiler.fit.fit_dual_map_to_plans`."""
    if holdout_batches < 1 or num_batches < 1:
        raise ValueError("calibration needs at least one fitting batch and one held-out batch")
    if map not in DUAL_MAPS:
        raise ValueError(f"unknown dual map {map!r}; choose one of {sorted(DUAL_MAPS)}")
    layers = sinkhorn_layers(model)
    if not layers:
        raise ValueError("the model has no Sinkhorn attention layer: ASAP compiles a trained Sinkhorn teacher")
    captured = capture_attention_inputs(model, calib_loader, layers, num_batches + holdout_batches)
    options = dict(map=map, ridge=ridge, seed=seed, kl_options=kl_options or {})
    return {
        name: _LayerCalibration(layer, captured[name][:num_batches], captured[name][num_batches:], options)
        for name, layer in layers.items()
    }


def compiled_at(model: nn.Module, calibrations: dict[str, _LayerCalibration], point: OperatingPoint) -> nn.Module:
    """A copy of ``model`` (eval mode) with each Sinkhorn layer's normaliser replaced by ASAP at ``point``."""
    point.validate()
    student = copy.deepcopy(model).eval()
    for name, layer in sinkhorn_layers(student).items():
        layer.set_normaliser(calibrations[name].normaliser(point))
    return student


@torch.no_grad()
def compile_candidates(
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    points: Sequence[OperatingPoint],
    **calibration: Any,
) -> dict[OperatingPoint, nn.Module]:
    """One compiled copy of ``model`` per operating point, all calibrated on the same batches
    (:func:`layer_calibrations`, which takes ``calibration``). Points that share ``(slices, directions)``
    share their features and fits (ridge, and KL per side)."""
    for point in points:
        point.validate()
    calibrations = layer_calibrations(model, calib_loader, **calibration)
    return {point: compiled_at(model, calibrations, point) for point in points}


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
    two_sided: bool | str = True,
    fit: str = "kl",
    features: str = "sliced",
    **calibration: Any,
) -> tuple[nn.Module, OperatingPoint, pd.DataFrame]:
    """Calibrate every candidate (``slices``, default :func:`slice_candidates` of the head dim, times
    ``directions``) on the same batches with the ridge map, keep the one :func:`choose_operating_point` picks on
    the held-out calibration batches, and fit it with ``fit`` (the KL fit is the costly one: it runs at the
    chosen point only). Returns the compiled model, its operating point and the candidates table (the ridge
    candidates, and the refitted point when ``fit`` is not ridge). ``calibration``: see
    :func:`layer_calibrations`."""
    slices = slices or slice_candidates(teacher_head_dim(model))
    candidates = [OperatingPoint(count, kind, two_sided, "ridge", features) for count in slices for kind in directions]
    for point in candidates:
        point.validate()
    calibrations = layer_calibrations(model, calib_loader, **calibration)
    compiled = {point: compiled_at(model, calibrations, point) for point in candidates}
    chosen = replace(choose_operating_point({p: heldout_plan_error(m) for p, m in compiled.items()}), fit=fit)
    if chosen not in compiled:
        compiled[chosen] = compiled_at(model, calibrations, chosen)
    return compiled[chosen], chosen, candidates_table(compiled, chosen)


@torch.no_grad()
def compile(  # noqa: A001 - the paper's verb; shadows the builtin only inside this module
    model: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    slices: int | str | None = None,
    map: str = "linear",  # noqa: A002
    two_sided: bool | str = True,
    directions: str = "random",
    fit: str = "kl",
    features: str = "sliced",
    num_batches: int = 8,
    holdout_batches: int = 2,
    ridge: float = 1e-4,
    seed: int = 0,
    kl_options: dict[str, Any] | None = None,
) -> nn.Module:
    """A copy of ``model`` with every Sinkhorn attention replaced by ASAP, calibrated on ``calib_loader``.

    For each Sinkhorn layer and head: collect the sliced 1-D potentials of the queries (features) and the
    teacher's query dual (target) on ``num_batches`` batches, fit the map (``"linear"``: closed-form ridge;
    ``"mlp"``: ridge then a small residual MLP), refine it on the teacher's plans (``fit="kl"``, see
    :mod:`asap.compiler.fit`), and score it on ``holdout_batches`` further batches (held-out R^2, relative plan
    error and KL, stored in the layer's buffers; see :func:`calibration_report`). The teacher is left
    untouched; the weights of the copy are the teacher's.

    Args:
        slices: ``L`` slice directions per head (default: the head dimension), or ``"auto"``: every ``L`` of
            :func:`slice_candidates`, chosen by :func:`select_operating_point` on the held-out batches.
        map: ``"linear"`` or ``"mlp"``.
        two_sided: rebuild rows exactly (``True``: ``softmax_j(S + g)``), columns exactly (``False``), or per
            head whichever has the lower held-out plan error (``"auto"``).
        directions: ``"random"`` (seeded orthonormal), ``"pca"`` (principal directions of the calibration
            queries and keys, per head) or ``"auto"`` (both, chosen as for ``slices``).
        fit: ``"kl"`` (default: ridge, then the plans' KL) or ``"ridge"`` (the dual's least squares only).
        features: the map's inputs: ``"sliced"`` (the paper's: 1-D potentials and mean-field terms, two fused
            passes at inference) or ``"sliced+lse"`` (plus the rows' log-sum-exps: three passes, for sharp
            attention); see :mod:`asap.ops.dual_features`.
    """
    if directions not in (*DIRECTIONS, "auto"):
        raise ValueError(f"directions must be one of {(*DIRECTIONS, 'auto')}, got {directions!r}")
    calibration = dict(map=map, num_batches=num_batches, holdout_batches=holdout_batches, ridge=ridge, seed=seed)
    calibration.update(kl_options=kl_options)
    kinds = DIRECTIONS if directions == "auto" else (directions,)
    if slices == "auto" or directions == "auto":
        counts = None if slices == "auto" else [slices or teacher_head_dim(model)]
        return select_operating_point(model, calib_loader, counts, kinds, two_sided, fit, features, **calibration)[0]
    if isinstance(slices, str):
        raise ValueError(f"slices must be a positive integer, None or 'auto', got {slices!r}")
    point = OperatingPoint(slices or teacher_head_dim(model), directions, two_sided, fit, features)
    return compile_candidates(model, calib_loader, [point], **calibration)[point]


def teacher_iterations(teacher: nn.Module) -> int:
    """The teacher's ``T`` (every attention layer must be Sinkhorn with the same ``n_iters``)."""
    iterations = {
        layer.normaliser.n_iters
        for layer in attention_layers(teacher).values()
        if isinstance(layer.normaliser, Sinkhorn)
    }
    if len(iterations) != 1:
        raise ValueError(f"the teacher must be a Sinkhorn model with one n_iters, found {sorted(iterations)}")
    return iterations.pop()


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
    """One row per (ASAP layer, head): the side rebuilt exactly (``two_sided``: the per-head choice of
    ``"auto"``), and the held-out scores calibration stored (:data:`asap.nn.normalisers.CALIBRATION_SCORES`:
    R^2 of the dual, relative plan error and mean row KL vs the teacher, for the deployed map and for the ridge
    map it started from, and the plan error of each side)."""
    rows = []
    for name, module in attention_layers(model).items():
        if isinstance(module.normaliser, ASAP):
            normaliser = module.normaliser
            sides = normaliser.head_sides()
            for head in range(module.num_heads):
                rows.append(
                    {
                        "layer": name,
                        "head": head,
                        **{score: float(getattr(normaliser, score)[head]) for score in CALIBRATION_SCORES},
                        "slices": normaliser.directions.shape[-1],
                        "map": normaliser.dual_map_kind,
                        "features": normaliser.features,
                        "side_rule": str(normaliser.two_sided),
                        "two_sided": sides[head],
                    }
                )
    if not rows:
        raise ValueError("the model has no ASAP attention layer")
    return pd.DataFrame(rows)


def with_two_sided(model: nn.Module, two_sided: bool | str) -> nn.Module:
    """A copy of a compiled model that rebuilds rows exactly (two-sided), columns exactly (one-sided) or each
    head's calibrated choice (``"auto"``); the maps are shared calibration, only the final c-transform differs."""
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
