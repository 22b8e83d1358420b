"""Downstream replacement: how much of the teacher's accuracy ASAP keeps, and what it needs to keep it.

Per trained teacher: accuracy recovered against the amount of calibration data and (for token tasks) against
the sequence length with the map calibrated on short sequences only. Accuracy against Sinkhorn iterations and
ASAP slices is the frontier's (:mod:`asap.bench.frontier`), on the whole test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

import pandas as pd
from torch import Tensor, nn

import asap.compiler as compiler
from asap.bench.agreement import accuracy


def calibration_curve(
    teacher: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    sizes: Sequence[int] = (1, 2, 4, 8, 16),
    max_test_batches: int | None = None,
    **compile_options: Any,
) -> pd.DataFrame:
    """Accuracy recovered and held-out R^2 when calibrating on ``k`` batches (plus one held-out batch)."""
    teacher_accuracy = accuracy(teacher, test_loader, max_test_batches)
    calib = list(islice(calib_loader, max(sizes) + 1))
    rows = []
    for size in sizes:
        batches = calib[:size] + [calib[-1]]
        student = compiler.compile(teacher, batches, num_batches=size, holdout_batches=1, **compile_options)
        report = compiler.calibration_report(student)
        student_accuracy = accuracy(student, test_loader, max_test_batches)
        rows.append(
            {
                "calib_batches": size,
                "calib_samples": sum(len(labels) for _, labels in batches[:size]),
                "teacher_accuracy": teacher_accuracy,
                "asap_accuracy": student_accuracy,
                "recovered": student_accuracy / teacher_accuracy,
                "r2_mean": report["r2"].mean(),
                "plan_error_mean": report["plan_error"].mean(),
            }
        )
    return pd.DataFrame(rows)


def length_generalisation(
    teacher: nn.Module,
    calib_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    calib_max_len: int,
    buckets: Sequence[tuple[int, int]],
    num_batches: int = 8,
    **compile_options: Any,
) -> pd.DataFrame:
    """Calibrate on batches no longer than ``calib_max_len`` tokens; score teacher and ASAP per test length
    bucket ``[low, high)`` (token batches are length-bucketed, so a batch's width is its length)."""
    short = (batch for batch in calib_loader if batch[0].shape[1] <= calib_max_len)
    calib = list(islice(short, num_batches + 1))
    if len(calib) < 2:
        raise ValueError(f"fewer than two calibration batches are at most {calib_max_len} tokens long")
    student = compiler.compile(teacher, calib, num_batches=len(calib) - 1, holdout_batches=1, **compile_options)
    rows = []
    for low, high in buckets:
        batches = [batch for batch in test_loader if low <= batch[0].shape[1] < high]
        if not batches:
            continue
        teacher_accuracy, student_accuracy = accuracy(teacher, batches), accuracy(student, batches)
        rows.append(
            {
                "calib_max_len": calib_max_len,
                "length_low": low,
                "length_high": high,
                "samples": sum(len(labels) for _, labels in batches),
                "teacher_accuracy": teacher_accuracy,
                "asap_accuracy": student_accuracy,
                "recovered": student_accuracy / teacher_accuracy if teacher_accuracy else float("nan"),
            }
        )
    return pd.DataFrame(rows)
