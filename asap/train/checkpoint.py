"""A trained teacher and its data, from a training checkpoint; the weights-only checkpoints a profile commits.

A training checkpoint holds the optimiser, schedule and loop state besides the weights. The weights-only
checkpoint :func:`export_weights` writes keeps what :meth:`Classifier.load_from_checkpoint` needs (the state
dict, the hyperparameters that rebuild the model, Lightning's version) and nothing that unpickles code, with a
record beside it (``<name>.json``: its sha256, size and provenance). :func:`load_teacher` checks a checkpoint
against its record whenever one is there, so a committed weights file that changed is refused, not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch import nn

from asap.data import create_datamodule
from asap.data.wheels import sha256sum
from asap.provenance import provenance, write_json_atomic
from asap.results import weights_record_path, write_atomic
from asap.train.module import Classifier

WEIGHTS_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


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
    check_weights(checkpoint)
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


def export_weights(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the weights-only checkpoint of a training checkpoint to ``out`` and its record beside it.

    Returns the record: ``sha256`` and ``bytes`` of ``out``, the ``checkpoint`` it came from, ``provenance``.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    missing = [key for key in WEIGHTS_KEYS if key not in state]
    if missing:
        raise ValueError(f"{checkpoint} is not a Lightning training checkpoint (it lacks {', '.join(missing)})")
    write_atomic(out, lambda tmp: torch.save({key: state[key] for key in WEIGHTS_KEYS}, tmp))
    record = {
        "sha256": sha256sum(Path(out)),
        "bytes": Path(out).stat().st_size,
        "checkpoint": str(checkpoint),
        "provenance": provenance(),
    }
    write_json_atomic(weights_record_path(out), record)
    return record


def check_weights(checkpoint: str | Path) -> None:
    """Raise a ``ValueError`` if ``checkpoint`` has a record (:func:`weights_record_path`) whose sha256 it
    does not match; a checkpoint without a record (a training run's own) passes."""
    record_path = weights_record_path(checkpoint)
    if Path(checkpoint).suffix != ".ckpt" or not record_path.is_file():
        return
    try:
        expected = json.loads(record_path.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{record_path} is not a weights record (no sha256: {type(error).__name__})") from error
    actual = sha256sum(Path(checkpoint))
    if actual != expected:
        raise ValueError(
            f"{checkpoint}: sha256 {actual[:12]}... does not match its record {record_path} ({expected[:12]}...)"
        )
