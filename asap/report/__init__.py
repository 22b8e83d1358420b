"""Tables and figures generated from ``results/`` only (never typed by hand).

Exports load on first use, so that ``python -m asap.report.headline`` (the verdict, recomputed from the committed
files) needs numpy, pandas and PyYAML only, not torch or matplotlib.
"""

from asap import lazy_exports

_EXPORTS = {"build_report": "asap.report.build"}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
