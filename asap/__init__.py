"""asap: amortized doubly-stochastic attention via sliced dual projection, and its benchmark suite.

Subpackages load on first use: ``asap.ops`` (functional operators), ``asap.nn`` (attention modules),
``asap.models``, ``asap.data``, ``asap.train``, ``asap.compiler``, ``asap.bench``, ``asap.report``. The paper's
verb is a function here: ``asap.compile(model, calib_loader, ...)`` (:func:`asap.compiler.compile`).
"""

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = {"ops", "nn", "models", "data", "train", "compiler", "bench", "report", "provenance", "tracking"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"asap.{name}")
    if name == "compile":  # a function, not a module: ``import asap.compile`` is not a thing
        return importlib.import_module("asap.compiler").compile
    raise AttributeError(f"module 'asap' has no attribute {name!r}")


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``exports`` (name -> module) on first use, so that a
    package's light parts load without its heavy ones (e.g. configs without Lightning)."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return getattr_
