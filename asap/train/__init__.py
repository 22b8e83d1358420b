"""Lightning training: configs, the classifier module, cost callbacks and the run record.

Exports load on first use, so that the workflow can read configs (``asap.train.config``, YAML only) without
importing Lightning.
"""

from asap import lazy_exports

_EXPORTS = {
    "apply_overrides": "asap.train.config",
    "load_task_config": "asap.train.config",
    "run_config": "asap.train.config",
    "variant_entry": "asap.train.config",
    "Classifier": "asap.train.module",
    "Teacher": "asap.train.checkpoint",
    "load_teacher": "asap.train.checkpoint",
    "model_arguments": "asap.train.run",
    "train": "asap.train.run",
    "train_task": "asap.train.run",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
