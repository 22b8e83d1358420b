"""Train-then-compile: calibrate ASAP on a trained Sinkhorn teacher and swap it in without retraining.

The package is itself callable, so the paper's verb reads as written: ``asap.compile(model, calib_loader, ...)``
is :func:`asap.compile.compiler.compile`.
"""

import sys
import types

from asap.compile.compiler import (
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
from asap.compile.io import load_compiled, read_compiled, save_compiled
from asap.compile.online import compile_online, online_report


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

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
