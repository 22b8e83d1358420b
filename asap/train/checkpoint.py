"""A trained teacher and its data, from a training checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch import nn

from asap.data import create_datamodule
from asap.train.module import Classifier


@dataclass
class Teacher:
    """A trained Sinkhorn model (eval mode), its data (set up for fit and test), its run config and the
    arguments of :func:`asap.models.create_model` that rebuild it."""

    model: nn.Module
    datamodule: LightningDataModule
    run: dict[str, Any]
    model_args: dict[str, Any]


def load_teacher(checkpoint: str | Path, data_dir: str | Path = "data", batch_size: int | None = None) -> Teacher:
    """The teacher saved in a training checkpoint.

    Raises a ``ValueError`` if the checkpoint is not a Sinkhorn run (only those can be compiled).
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    try:
        module = Classifier.load_from_checkpoint(checkpoint, map_location=None if torch.cuda.is_available() else "cpu")
    except Exception as error:  # torch's and Lightning's messages speak of pickles and weights_only, not of us
        raise ValueError(
            f"{checkpoint} is not an asap training checkpoint (it does not load: {type(error).__name__})"
        ) from error
    run = module.hparams.get("run")
    if run is None:
        raise ValueError(f"{checkpoint} holds no run config; retrain it with this version of asap")
    if module.variant != "sinkhorn":
        raise ValueError(f"{checkpoint} is a {module.variant!r} model; ASAP compiles Sinkhorn teachers only")
    data = dict(run.get("data", {}))
    if batch_size is not None:
        data["batch_size"] = batch_size
    datamodule = create_datamodule(run["task"], data_dir=data_dir, seed=run["seed"], **data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    return Teacher(module.model.eval(), datamodule, run, dict(module.hparams.model))
