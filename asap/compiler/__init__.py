"""Train-then-compile: calibrate ASAP on a trained Sinkhorn teacher and swap it in without retraining.

The paper's verb is exported at the top level: ``asap.compile(model, calib_loader, ...)`` is
:func:`asap.compiler.operating_points.compile`, also ``asap.compiler.compile``.
"""

from asap.compiler.io import load_compiled, read_compiled, save_compiled
from asap.compiler.online import compile_online, online_report
from asap.compiler.operating_points import (
    DIRECTIONS,
    OPERATING_POINT_RULE,
    OperatingPoint,
    calibration_report,
    choose_operating_point,
    compile,
    compile_candidates,
    select_operating_point,
    slice_candidates,
    with_two_sided,
    without_dual_map,
)

__all__ = [
    "DIRECTIONS",
    "OPERATING_POINT_RULE",
    "OperatingPoint",
    "calibration_report",
    "choose_operating_point",
    "compile",
    "compile_candidates",
    "compile_online",
    "load_compiled",
    "online_report",
    "read_compiled",
    "save_compiled",
    "select_operating_point",
    "slice_candidates",
    "with_two_sided",
    "without_dual_map",
]
