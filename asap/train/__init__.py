"""Lightning training: configs, the classifier module, cost callbacks and the run record.

Exports load on first use, so that the workflow can read configs (``asap.train.config``, YAML only) without
importing Lightning.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "apply_overrides": "asap.train.config",
    "load_task_config": "asap.train.config",
    "run_config": "asap.train.config",
    "variant_entry": "asap.train.config",
    "Classifier": "asap.train.module",
    "model_arguments": "asap.train.run",
    "train": "asap.train.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asap.train' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
