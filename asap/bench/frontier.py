"""The accuracy-cost frontier: a trained Sinkhorn teacher against everything that could replace it frozen.

For one teacher (``T`` iterations), every point shares the teacher's weights and is scored on the whole test
split in one process:

- ``teacher``: the teacher itself (``2T + 1`` passes over the scores);
- ``truncated``: Sinkhorn with ``k = 0 .. T-1`` iterations (``k = 0`` is a row softmax of the teacher's scores,
  timed as fused softmax, which computes the same attention);
- ``asap``: ASAP (ridge maps) two-sided and one-sided at every candidate ``L``
  (:func:`asap.compiler.slice_candidates`) with random and with principal (PCA) directions, all calibrated on
  the same calibration batches; at the operating point's ``L`` and directions every compile option (ridge and
  KL fits, each two-sided, one-sided and per-head ``auto``; and with the other feature set, ``sliced+lse`` for the
  paper's ``sliced``, :mod:`asap.ops.dual_features`); ASAP with its map removed (``f = 0``) at the
  operating point; and, for a teacher trained with online maps, the model compiled from them (``asap_online``).

Per point: accuracy, agreement with the teacher's predictions, mean KL(teacher || point), Tango's paired
90% interval of the accuracy difference to the teacher (:mod:`asap.bench.agreement`), relative plan error and
worst column-marginal error on the teacher's own layer inputs (:mod:`asap.bench.fidelity`), each ASAP layer's
held-out calibration plan error (``heldout_plan_error_layer<i>``, stored by calibration), per-layer latency
(one attention normaliser, the model's heads and head dim, at the model's ``n`` and at fixed ``n``), and
end-to-end throughput. Latencies are measured side by side in this process with the stated thread count.
The operating point comes from the compile step (chosen on held-out *calibration* batches), never from here.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from asap.bench.agreement import compare_predictions, predictions
from asap.bench.fidelity import capture_layer_inputs, plan_fidelity
from asap.bench.timing import interleaved_rounds, random_qkv
from asap.compiler.fit import FITS
from asap.compiler.operating_points import (
    DIRECTIONS,
    OperatingPoint,
    compiled_at,
    layer_calibrations,
    slice_candidates,
    teacher_head_dim,
    teacher_iterations,
    with_two_sided,
    without_dual_map,
)
from asap.data.base import example_ids
from asap.nn import attention_layers, with_normaliser
from asap.nn.normalisers import ASAP, SIDES, Sinkhorn
from asap.ops import DUAL_FEATURES
from asap.results import FrontierPredictions, split_order_sha256

ONE_SIDED = ("all", "operating_point")


def frontier_slices(head_dim: int, factors: Sequence[float], operating_point: OperatingPoint) -> list[int]:
    """``L = factor x head_dim`` for each factor, and the operating point's ``L``, ascending."""
    return sorted(set(slice_candidates(head_dim, factors)) | {operating_point.slices})


@dataclass
class FrontierPoint:
    """One model on the frontier and what it is: ``family`` (teacher, truncated, asap, asap_no_map), the cost
    knob (``iterations`` or ``slices``), ASAP's directions and side, and whether it is the operating point."""

    name: str
    family: str
    model: nn.Module
    iterations: int | None = None
    slices: int | None = None
    directions: str | None = None
    two_sided: bool | str | None = None
    fit: str | None = None
    features: str | None = None
    operating_point: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def frontier_points(
    teacher: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    operating_point: OperatingPoint,
    slices: Sequence[int] | None = None,
    directions: Sequence[str] = DIRECTIONS,
    one_sided: str = "all",
    online: nn.Module | None = None,
    **calibration: Any,
) -> list[FrontierPoint]:
    """Every model on the frontier; ``calibration`` goes to :func:`asap.compiler.layer_calibrations`.

    - the sweep: ASAP with ridge maps at every ``L`` of ``slices`` (default :func:`asap.compiler.slice_candidates`)
      and direction kind, two-sided, and one-sided for every kind (``one_sided="all"``) or the operating
      point's (``"operating_point"``);
    - at the operating point's ``L`` and directions, every compile option: ``fit`` ridge and KL, each with
      ``two_sided`` True, False and ``"auto"``; the operating point itself is named ``asap``; and the other
      feature sets (:data:`asap.ops.DUAL_FEATURES`) at the operating point's side, with either fit;
    - the operating point with its map removed (``asap_no_map``), and ``online`` (a model compiled from maps
      learned while the teacher trained, :func:`asap.compiler.compile_online`) as ``asap_online``.
    """
    if one_sided not in ONE_SIDED:
        raise ValueError(f"one_sided must be one of {ONE_SIDED}, got {one_sided!r}")
    n_iters = teacher_iterations(teacher)
    slices = sorted(slices or slice_candidates(teacher_head_dim(teacher)))
    if operating_point.slices not in slices or operating_point.directions not in directions:
        raise ValueError(f"the operating point {operating_point} is not among the candidates {slices} x {directions}")
    calibrations = layer_calibrations(teacher, calib_loader, **calibration)

    points = [FrontierPoint("teacher", "teacher", teacher, iterations=n_iters)]
    for k in range(n_iters):
        model = with_normaliser(teacher, "softmax") if k == 0 else with_normaliser(teacher, "sinkhorn", n_iters=k)
        points.append(FrontierPoint(f"sinkhorn_{k}it", "truncated", model, iterations=k))

    def asap_point(point: OperatingPoint, model: nn.Module) -> FrontierPoint:
        chosen = point == operating_point
        return FrontierPoint(
            "asap" if chosen else f"asap_{point.name}",
            "asap",
            model,
            slices=point.slices,
            directions=point.directions,
            two_sided=point.two_sided,
            fit=point.fit,
            features=point.features,
            operating_point=chosen,
        )

    at_point = dict(
        slices=operating_point.slices, directions=operating_point.directions, features=operating_point.features
    )
    options = [OperatingPoint(**at_point, two_sided=side, fit=fit) for fit in FITS for side in SIDES]
    if operating_point not in options:
        options.append(operating_point)
    other_features = [features for features in DUAL_FEATURES if features != operating_point.features]
    options += [replace(operating_point, fit=fit, features=features) for features in other_features for fit in FITS]
    compiled = {point: compiled_at(teacher, calibrations, point) for point in options}
    for count in slices:
        for kind in directions:
            two_sided_ridge = OperatingPoint(count, kind, True, "ridge")
            if two_sided_ridge in compiled:  # compiled among the operating point's options
                ridge = compiled[two_sided_ridge]
            else:
                ridge = compiled_at(teacher, calibrations, two_sided_ridge)
            sides = (True, False) if one_sided == "all" or kind == operating_point.directions else (True,)
            for side in sides:
                point = OperatingPoint(count, kind, side, "ridge")
                if point not in options:  # the operating point's options get their rows below
                    points.append(asap_point(point, ridge if side else with_two_sided(ridge, False)))
    points += [asap_point(point, model) for point, model in compiled.items()]
    points.append(
        FrontierPoint(
            "asap_no_map",
            "asap_no_map",
            without_dual_map(compiled[operating_point]),
            fit=operating_point.fit,
            **at_point,
            two_sided=operating_point.two_sided,
        )
    )
    if online is not None:
        normalisers = [layer.normaliser for layer in attention_layers(online).values()]
        slices_online = min(normaliser.directions.shape[-1] for normaliser in normalisers)
        (features,) = {normaliser.features for normaliser in normalisers}  # compile_online: one set for the model
        points.append(
            FrontierPoint("asap_online", "asap_online", online, slices=slices_online, fit="online", features=features)
        )
    return points


def head_sides(model: nn.Module) -> str | None:
    """Each ASAP layer's side per head, ``2`` rebuilt two-sided (rows exact) and ``1`` one-sided, layers joined by
    ``/`` (e.g. ``2212/2222``); ``None`` for a model without ASAP layers."""
    layers = [layer.normaliser for layer in attention_layers(model).values() if isinstance(layer.normaliser, ASAP)]
    if not layers:
        return None
    return "/".join("".join("2" if side else "1" for side in normaliser.head_sides()) for normaliser in layers)


def heldout_plan_errors(model: nn.Module) -> dict[str, float]:
    """Per ASAP layer of ``model`` (in order), the held-out relative plan error its calibration stored, mean over
    heads, as ``heldout_plan_error_layer<i>``; nothing for a model without ASAP layers."""
    layers = [layer.normaliser for layer in attention_layers(model).values() if isinstance(layer.normaliser, ASAP)]
    return {f"heldout_plan_error_layer{i}": float(asap.plan_error.mean()) for i, asap in enumerate(layers)}


def layer_call(
    model: nn.Module, seq_len: int, batch: int, seed: int = 0, normaliser: nn.Module | None = None
) -> Callable[[], Tensor]:
    """One attention normaliser of ``model`` (or ``normaliser`` in its place) applied to random ``q, k, v`` of
    the model's heads and head dim (inference, no mask)."""
    layer = next(iter(attention_layers(model).values()))
    q, k, v = random_qkv(batch, layer.num_heads, seq_len, layer.head_dim, layer.qkv.weight.device, seed)
    return partial(layer.normaliser if normaliser is None else normaliser, q, k, v)  # a compiled module has no bool()


def timing_key(point: FrontierPoint, sides: str | None) -> str:
    """One name per computation: points that compute the same thing (the ridge and KL maps, ``auto`` where
    every head chose one side, ASAP without its map) share a key and are timed once."""
    if point.family == "teacher":
        return "teacher"
    if point.family == "truncated":
        return "softmax" if point.iterations == 0 else f"sinkhorn_{point.iterations}it"
    side = sides or ""
    if side and set(side) - {"/"} == {"2"}:
        side = "two"
    elif side and set(side) - {"/"} == {"1"}:
        side = "one"
    directions = point.directions if point.family != "asap_online" else "online"
    return f"asap_L{point.slices}_{directions}_{side}_{point.features}"


TEACHER_IMPLS = ("lean", "flash", "unrolled")


def teacher_implementations(teacher: nn.Module, compiled: bool) -> dict[str, nn.Module]:
    """The teacher's Sinkhorn in every implementation, eager and (``compiled``) under ``torch.compile``
    (inductor, static shapes): one of them is the strongest teacher, found by timing."""
    layer = next(iter(attention_layers(teacher).values()))
    n_iters = teacher_iterations(teacher)
    eager = {
        f"sinkhorn_{impl}": Sinkhorn(layer.num_heads, layer.head_dim, n_iters, impl=impl) for impl in TEACHER_IMPLS
    }
    if not compiled:
        return eager
    return {**eager, **{name + "_compiled": torch.compile(module, dynamic=False) for name, module in eager.items()}}


@torch.no_grad()
def accuracy_cost_frontier(
    teacher: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    operating_point: OperatingPoint,
    seq_len: int,
    seq_lens: Sequence[int] = (1024,),
    latency_batch: int = 1,
    fidelity_batches: int = 2,
    min_run_time: float = 0.3,
    threads: int = 1,
    rounds: int = 15,
    compiled: bool = True,
    max_test_batches: int | None = None,
    slices: Sequence[int] | None = None,
    directions: Sequence[str] = DIRECTIONS,
    one_sided: str = "all",
    online: nn.Module | None = None,
    **calibration: Any,
) -> pd.DataFrame:
    """One row per frontier point (see the module docstring and :func:`frontier_points`); ``seq_len`` is the
    model's own ``n``. Timing: :func:`asap.bench.timing.interleaved_rounds`, ``rounds`` blocks of at least
    ``min_run_time / rounds`` s per computation (:func:`timing_key`), with the teacher in every implementation
    (:func:`teacher_implementations`, compiled too unless ``compiled`` is off) and the operating point compiled;
    the raw rounds are in ``table.attrs["timings"]``."""
    teacher = teacher.eval()
    points = frontier_points(
        teacher, calib_loader, operating_point, slices, directions, one_sided, online, **calibration
    )
    teacher_logits, labels = predictions(teacher, test_loader, max_test_batches)
    layer_inputs = capture_layer_inputs(teacher, test_loader, fidelity_batches)
    test_batch = next(iter(test_loader))[0].to(next(teacher.parameters()).device)
    lengths = {"model": seq_len, **{str(n): n for n in seq_lens}}
    keys = {point.name: timing_key(point, head_sides(point.model)) for point in points}
    operating = next(point for point in points if point.operating_point)
    timed: dict[str, Callable[[], object]] = {}
    for point in points:
        for length, n in lengths.items():
            timed.setdefault(f"{keys[point.name]}@{length}", layer_call(point.model, n, latency_batch))
    implementations = teacher_implementations(teacher, compiled)
    # ASAP at its fastest: the operating point's own case (eager, timed above) or compiled
    fastest_asap = {keys[operating.name]: None}
    if compiled:
        fastest_asap["asap_compiled"] = torch.compile(
            next(iter(attention_layers(operating.model).values())).normaliser, dynamic=False
        )
    for length, n in lengths.items():
        extra = {**implementations, **{name: module for name, module in fastest_asap.items() if module is not None}}
        for name, normaliser in extra.items():
            timed[f"{name}@{length}"] = layer_call(teacher, n, latency_batch, normaliser=normaliser)
    timed["teacher@batch"] = partial(teacher, test_batch)
    timed["asap@batch"] = partial(operating.model, test_batch)
    print(f"timing {len(timed)} computations in {rounds} interleaved rounds", flush=True)
    times = interleaved_rounds(timed, rounds, min_run_time / rounds, threads, noise_floor="teacher@model")
    comparisons = {}
    for length in lengths:
        strongest = min(implementations, key=lambda name: times.median(f"{name}@{length}"))
        asap_best = min(fastest_asap, key=lambda name: times.median(f"{name}@{length}"))
        ratios = times.ratio_rounds(f"{strongest}@{length}", f"{asap_best}@{length}")
        comparisons[length] = {"strongest_teacher": strongest, "fastest_asap": asap_best, "speedup_rounds": ratios}
    times.extra.update(keys=keys, comparisons=comparisons, lengths=lengths, latency_batch=latency_batch)
    rows, predicted = [], []
    for index, point in enumerate(points):
        logits, _ = predictions(point.model, test_loader, max_test_batches)
        predicted.append(logits.argmax(-1).numpy())
        if point.operating_point:
            operating_logits = logits
        row: dict[str, Any] = {
            "variant": point.name,
            "family": point.family,
            "iterations": point.iterations,
            "slices": point.slices,
            "directions": point.directions,
            "two_sided": point.two_sided,
            "fit": point.fit,
            "features": point.features,
            "head_sides": head_sides(point.model),
            "operating_point": point.operating_point,
            "teacher_iterations": points[0].iterations,
            "seq_len": seq_len,
            "test_samples": len(labels),
        }
        row.update(compare_predictions(logits, teacher_logits, labels))
        row.update(plan_fidelity(point.model, teacher, layer_inputs))
        row.update(heldout_plan_errors(point.model))
        for key in lengths:
            case = f"{keys[point.name]}@{key}"
            row[f"latency_ms_n{key}"] = times.median(case)
            row[f"latency_iqr_ms_n{key}"] = times.iqr(case) if rounds > 1 else float("nan")
            strongest = comparisons[key]["strongest_teacher"]
            row[f"speedup_vs_strongest_n{key}"] = statistics.median(times.ratio_rounds(f"{strongest}@{key}", case))
        end_to_end = {"teacher": "teacher@batch", "asap": "asap@batch"}.get(point.name)
        row["throughput_samples_per_s"] = len(test_batch) / times.median(end_to_end) * 1e3 if end_to_end else None
        row.update(latency_batch=latency_batch, timing_threads=threads, timing_rounds=rounds)
        rows.append(row)
        print(
            f"[{index + 1}/{len(points)}] {point.name}: agreement {row['agreement']:.4f}, "
            f"latency n={seq_len} {row['latency_ms_nmodel']:.3f} ms",
            flush=True,
        )
    table = pd.DataFrame(rows)
    teacher_row = table[table.family == "teacher"].iloc[0]
    softmax_row = table[(table.family == "truncated") & (table.iterations == 0)].iloc[0]
    for key in lengths:
        column = f"latency_ms_n{key}"
        table[f"speedup_vs_teacher_n{key}"] = teacher_row[column] / table[column]
        table[f"time_vs_softmax_n{key}"] = table[column] / softmax_row[column]
    for key in lengths:
        table[f"strongest_teacher_n{key}"] = comparisons[key]["strongest_teacher"]
    table["throughput_vs_teacher"] = table["throughput_samples_per_s"] / teacher_row["throughput_samples_per_s"]
    table["noise_floor_ratio"] = times.noise_floor_ratio
    table.attrs["timings"] = times.to_dict()
    table.attrs["predictions"] = frontier_predictions(
        test_loader, [point.name for point in points], predicted, labels, teacher_logits, operating_logits
    )
    return table


def frontier_predictions(
    test_loader: DataLoader,
    variants: Sequence[str],
    predicted: Sequence[np.ndarray],
    labels: Tensor,
    teacher_logits: Tensor,
    operating_logits: Tensor,
) -> FrontierPredictions:
    """The frontier's per-example predictions (:class:`asap.results.FrontierPredictions`), for the first
    ``len(labels)`` examples of ``test_loader`` (all of them unless the frontier stopped early)."""
    count = len(labels)
    ids = example_ids(test_loader)[:count]
    inputs, seen = [], 0
    for batch, _ in test_loader:
        if seen >= count:
            break
        inputs.append(batch[: count - seen].numpy())
        seen += len(batch)
    return FrontierPredictions(
        variants=tuple(variants),
        example_ids=ids,
        labels=labels.numpy(),
        predicted=np.stack(predicted),
        teacher_logits=teacher_logits.numpy(),
        asap_logits=operating_logits.numpy(),
        split_sha256=split_order_sha256(ids, labels.numpy(), inputs),
    )
