"""The compile job behind ``asap compile``: a training checkpoint in, a saved ASAP model and its reports out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from asap.compiler.io import save_compiled
from asap.compiler.online import compile_online, online_report
from asap.compiler.operating_points import (
    DIRECTIONS,
    OPERATING_POINT_RULE,
    OperatingPoint,
    calibration_report,
    select_operating_point,
)
from asap.provenance import provenance, write_csv_atomic, write_json_atomic


@dataclass
class CompiledRun:
    """What a compile job produced: the ASAP model, its calibration report (one row per layer and head), the
    chosen operating point and every candidate (``None`` for a model compiled from online maps)."""

    model: nn.Module
    report: pd.DataFrame
    point: OperatingPoint | None
    candidates: pd.DataFrame | None
    run: dict


def compile_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    report: str | Path | None = None,
    operating_point: str | Path | None = None,
    data_dir: str | Path = "data",
    slices: int | str | None = None,
    directions: str = "random",
    two_sided: bool | str = True,
    fit: str = "kl",
    features: str = "sliced",
    map: str = "linear",  # noqa: A002 - the dual map's name, as everywhere in asap.compiler
    num_batches: int = 8,
    seed: int = 0,
) -> CompiledRun:
    """Calibrate ASAP on the Sinkhorn run saved in ``checkpoint`` and save it to ``out``
    (:func:`asap.compiler.save_compiled`).

    ``slices``: slices per head (``None``: the head dim), or ``"auto"``: the operating-point rule over d/4 ... 4d
    (:func:`asap.compiler.select_operating_point`); ``directions``: ``random``, ``pca`` or ``auto`` (both);
    ``features``: the map's inputs (:data:`asap.ops.DUAL_FEATURES`).
    ``report`` receives the calibration report (CSV), ``operating_point`` the chosen point with every candidate
    and the teacher's shape (JSON, read by the benchmarks)."""
    from asap.compiler.operating_points import teacher_iterations
    from asap.nn import attention_layers
    from asap.train import load_teacher

    if directions not in (*DIRECTIONS, "auto"):
        raise ValueError(f"directions must be one of {[*DIRECTIONS, 'auto']}, got {directions!r}")
    teacher = load_teacher(checkpoint, data_dir)
    layer = next(iter(attention_layers(teacher.model).values()))
    candidate_slices = None if slices == "auto" else [slices or layer.head_dim]
    candidate_directions = DIRECTIONS if directions == "auto" else (directions,)
    calibration = {"map": map, "num_batches": num_batches, "seed": seed}
    student, point, candidates = select_operating_point(
        teacher.model,
        teacher.datamodule.train_dataloader(),
        candidate_slices,
        candidate_directions,
        two_sided,
        fit,
        features,
        **calibration,
    )
    model_args = {
        **teacher.model_args,
        "attention": "asap",
        "attention_options": {
            "num_slices": point.slices,
            "two_sided": point.two_sided,
            "dual_map": map,
            "features": point.features,
        },
    }
    selection = {"slices": slices, "directions": directions, "side": two_sided, "fit": fit, "features": features}
    selection.update(calibration)
    metadata = {"teacher_checkpoint": str(checkpoint), "run": teacher.run, "compile": selection}
    save_compiled(student, out, model_args, metadata)
    run = {key: teacher.run[key] for key in ("task", "variant", "seed")}
    table = calibration_report(student)
    if report:
        write_csv_atomic(table.assign(**run, directions=point.directions, fit=point.fit), report)
    if operating_point:
        write_json_atomic(
            operating_point,
            {
                **run,
                "operating_point": point.to_dict(),
                "rule": OPERATING_POINT_RULE,
                "heads": layer.num_heads,
                "head_dim": layer.head_dim,
                "teacher_iterations": teacher_iterations(teacher.model),
                "candidates": candidates.to_dict("records"),
                "compile": selection,
                "provenance": provenance(),
            },
        )
    return CompiledRun(student, table, point, candidates, teacher.run)


def compile_online_checkpoint(
    checkpoint: str | Path, out: str | Path, *, report: str | Path | None = None, data_dir: str | Path = "data"
) -> CompiledRun:
    """The ASAP model of a Sinkhorn run trained with online maps (``online_map: true``), from its maps alone: no
    calibration data (:func:`asap.compiler.compile_online`). ``report`` receives the maps' scores from the last
    validation epoch."""
    from asap.nn import ASAP
    from asap.train import load_teacher

    teacher = load_teacher(checkpoint, data_dir)
    student = compile_online(teacher.model)
    slices = {module.directions.shape[-1] for module in student.modules() if isinstance(module, ASAP)}
    model_args = {**teacher.model_args, "attention": "asap", "attention_options": {"num_slices": slices.pop()}}
    metadata = {"teacher_checkpoint": str(checkpoint), "run": teacher.run, "compile": {"online": True}}
    save_compiled(student, out, model_args, metadata)
    table = online_report(teacher.model)
    if report:
        run = {key: teacher.run[key] for key in ("task", "variant", "seed")}
        write_csv_atomic(table.assign(**run, fit="online"), report)
    return CompiledRun(student, table, None, None, teacher.run)
