"""asap: amortized doubly-stochastic attention via sliced dual projection, and its benchmark suite.

Subpackages load on first use: ``asap.ops`` (functional operators), ``asap.nn`` (attention modules),
``asap.models``, ``asap.data``, ``asap.train``, ``asap.compile`` (callable: ``asap.compile(model, loader)``),
``asap.bench``, ``asap.report``.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = {"ops", "nn", "models", "data", "train", "compile", "bench", "report", "provenance"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"asap.{name}")
    raise AttributeError(f"module 'asap' has no attribute {name!r}")
