"""Benchmarks: the accuracy-cost frontier of a frozen teacher, downstream replacement, speed.

Exports load on first use, so that ``python -m asap.bench.speed`` (run once per memory case) imports torch and
the operators only, not timm and the models.
"""

from asap import lazy_exports

_EXPORTS = {
    "accuracy": "asap.bench.agreement",
    "compare_predictions": "asap.bench.agreement",
    "predictions": "asap.bench.agreement",
    "accuracy_cost_frontier": "asap.bench.frontier",
    "frontier_points": "asap.bench.frontier",
    "calibration_curve": "asap.bench.downstream",
    "length_generalisation": "asap.bench.downstream",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
