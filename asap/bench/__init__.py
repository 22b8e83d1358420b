"""Benchmarks: frozen-layer comparison against the teacher, downstream replacement, speed."""

from asap.bench.downstream import calibration_curve, iteration_sweep, length_generalisation, slice_sweep
from asap.bench.frozen import accuracy, frozen_layer_benchmark, frozen_variants
from asap.bench.teacher import Teacher, load_teacher

__all__ = [
    "Teacher",
    "accuracy",
    "calibration_curve",
    "frozen_layer_benchmark",
    "frozen_variants",
    "iteration_sweep",
    "length_generalisation",
    "slice_sweep",
    "load_teacher",
]
