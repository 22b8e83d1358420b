"""Lightning training: configs, the classifier module, cost callbacks and the run record."""

from asap.train.config import apply_overrides, load_task_config, run_config
from asap.train.module import Classifier
from asap.train.run import model_arguments, train

__all__ = ["Classifier", "apply_overrides", "load_task_config", "model_arguments", "run_config", "train"]
