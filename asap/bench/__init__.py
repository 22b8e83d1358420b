"""Benchmarks: frozen-layer comparison against the teacher, downstream replacement, speed."""

from asap.bench.downstream import calibration_curve, length_generalisation
from asap.bench.frozen import accuracy, frozen_layer_benchmark, frozen_variants
from asap.bench.teacher import Teacher, load_teacher

__all__ = [
    "Teacher",
    "accuracy",
    "calibration_curve",
    "frozen_layer_benchmark",
    "frozen_variants",
    "length_generalisation",
    "load_teacher",
]
