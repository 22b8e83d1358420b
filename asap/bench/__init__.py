"""Benchmarks: frozen-layer comparison against the teacher, downstream replacement, speed.

Exports load on first use, so that ``python -m asap.bench.speed`` (run once per memory case) imports torch and
the operators only, not timm and the models.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Teacher": "asap.bench.teacher",
    "load_teacher": "asap.bench.teacher",
    "accuracy": "asap.bench.frozen",
    "frozen_layer_benchmark": "asap.bench.frozen",
    "frozen_variants": "asap.bench.frozen",
    "calibration_curve": "asap.bench.downstream",
    "iteration_sweep": "asap.bench.downstream",
    "length_generalisation": "asap.bench.downstream",
    "slice_sweep": "asap.bench.downstream",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asap.bench' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
