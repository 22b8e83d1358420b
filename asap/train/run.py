"""Train one (task, variant, seed) and write its record: metrics, training cost, config, provenance."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from asap.compiler.online import compile_online, online_layers, online_report
from asap.data import create_datamodule
from asap.data.base import constant_predictor_accuracy
from asap.provenance import provenance, write_json_atomic
from asap.results import write_atomic
from asap.tracking import finish_logger_runs, job_identity, log_reference_artifact
from asap.train.callbacks import OnlineCalibration, StepCost
from asap.train.config import DEFAULT_PROFILE, apply_overrides, load_task_config, run_config, validate_config
from asap.train.module import Classifier
from asap.train.resume import AtomicCheckpointIO, PublishBest, ResumeDataPosition, RNGStates

CHECKPOINT_EVERY_S = 600.0  # seconds of training between the checkpoints a killed run resumes from


def model_arguments(config: dict[str, Any], datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The model section of a run config, completed with the data's shapes and the attention variant."""
    arguments = dict(config["model"])
    if datamodule.modality == "vision":
        arguments.update(image_size=datamodule.image_size, in_chans=datamodule.in_chans)
    else:
        arguments.update(vocab_size=datamodule.vocab_size, max_len=datamodule.max_len)
    arguments.update(
        num_classes=datamodule.num_classes,
        attention=config.get("normaliser", config["variant"]),
        attention_options=config["attention_options"],
    )
    return arguments


class CheckpointReferenceLogger(WandbLogger):
    """Lightning's W&B logger that, when a fit ends well, logs each ``ModelCheckpoint``'s best checkpoint as an
    artifact *by reference* (:func:`asap.tracking.log_reference_artifact`): Lightning's own ``log_model`` uploads
    a copy of the file and refuses to run offline."""

    def __init__(self, *args: Any, checkpoint_artifact: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_artifact = checkpoint_artifact
        self._checkpointers: dict[int, ModelCheckpoint] = {}
        self._referenced: set[int] = set()

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        self._checkpointers[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status != "success" or self._experiment is None:
            return
        # fit, then test: each checkpointer's best once, the fit's (the published file; testing restores the
        # checkpointer state the best checkpoint was written with, which names the in-progress copy)
        for key, checkpointer in self._checkpointers.items():
            if checkpointer.monitor is None:  # the timer's last.ckpt: no best
                continue
            best = checkpointer.best_model_path
            if best and key not in self._referenced and Path(best).is_file():
                score = checkpointer.best_model_score
                metadata = {"monitor": checkpointer.monitor, "score": None if score is None else float(score)}
                log_reference_artifact(
                    self.experiment, self.checkpoint_artifact, "checkpoint", best, aliases=["best"], metadata=metadata
                )
                self._referenced.add(key)


def loggers_for(
    config: dict[str, Any], run_dir: Path, job_type: str = "train", run_id: str | None = None
) -> list[Logger]:
    """CSV under ``run_dir``, and W&B (offline unless ``WANDB_MODE`` says otherwise) unless ``logging.wandb`` is off.

    The W&B run has the identity of every workflow job (:func:`asap.tracking.job_identity`: group
    ``<profile>/<task>``, ``job_type``, tags), the config with provenance, and the best checkpoint by reference.
    ``run_id`` gives the W&B run its id: a resumed job logs under its first segment's id (offline, a folder of
    its own, which :func:`asap.tracking.read_offline_runs` and ``wandb sync`` join to the first).
    """
    loggers: list[Logger] = [CSVLogger(run_dir, name="csv", version="")]
    if config.get("logging", {}).get("wandb", True):
        os.environ.setdefault("WANDB_MODE", "offline")
        identity = job_identity(
            job_type, profile=config.get("profile"), task=config["task"], variant=config["variant"], seed=config["seed"]
        )
        loggers.append(
            CheckpointReferenceLogger(
                project=config.get("logging", {}).get("project", "asap"),
                save_dir=str(run_dir),
                config={**config, "provenance": provenance()},
                offline=os.environ["WANDB_MODE"] == "offline",
                checkpoint_artifact=f"checkpoint-{identity['name']}",
                id=run_id,
                resume="allow" if run_id else None,
                **identity,
            )
        )
    return loggers


def portable_path(path: str | Path) -> str:
    """``path`` relative to the working directory (the checkout the workflow runs in) when it lies inside it,
    so that a committed record names no machine's directories; as given otherwise."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def train(
    config: dict[str, Any],
    run_dir: str | Path,
    result_path: str | Path,
    data_dir: str | Path = "data",
    evaluate_test: bool = True,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> dict:
    """Fit, test the best checkpoint, and write the run record to ``result_path`` (atomically, last).

    ``run_dir`` receives the checkpoints and logs. While the run trains they live in ``run_dir/progress``: the
    best so far and ``last.ckpt``, written at every validation and every ``checkpoint_every_s`` seconds of
    training, each atomically (:mod:`asap.train.resume`). A run killed on the way (SIGKILL, a preemption's
    SIGTERM) continues from ``last.ckpt`` when the same command runs again: the same config in the same
    ``run_dir`` (a run dir holding another config's checkpoints is cleared and trained anew). Only a finished
    run has its best checkpoint at ``run_dir/checkpoints/best.ckpt``, which the workflow declares (Snakemake
    deletes a failed job's declared outputs, so the in-progress best lives elsewhere), and a record. With
    ``evaluate_test=False`` (screening a task, :mod:`asap.bench.screen`) the test split is never evaluated: the
    record's metrics are the validation split's, and its constant predictor is scored on validation.
    """
    validate_config(config)
    run_dir = Path(run_dir)
    progress = run_dir / "progress"
    resume_from = progress / "last.ckpt"
    identity = progress / "config.json"
    same_run = identity.is_file() and json.loads(identity.read_text()) == json.loads(json.dumps(config))
    if not (same_run and resume_from.is_file()):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        write_json_atomic(identity, config)
        resume_from = None
    wandb_id = progress / "wandb_id"  # one W&B run id for every segment of this run
    if not wandb_id.is_file():
        write_atomic(wandb_id, lambda tmp: tmp.write_text(secrets.token_hex(4)))
    else:
        print(f"resuming {config['task']}/{config['variant']}/seed{config['seed']} from {resume_from}", flush=True)
    L.seed_everything(config["seed"], workers=True, verbose=False)
    datamodule = create_datamodule(config["task"], data_dir=data_dir, seed=config["seed"], **config.get("data", {}))
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = Classifier(model=model_arguments(config, datamodule), optim=config["optim"], run=config)

    checkpoint = ModelCheckpoint(dirpath=progress, filename="best", monitor="val/acc", mode="max", save_last=True)
    on_a_timer = ModelCheckpoint(  # last.ckpt only, mid-epoch too
        dirpath=progress, save_top_k=0, save_last=True, train_time_interval=timedelta(seconds=checkpoint_every_s)
    )
    cost = StepCost()
    loggers = loggers_for(config, run_dir, run_id=wandb_id.read_text().strip())
    best = run_dir / "checkpoints" / "best.ckpt"  # the workflow's declared output, written when training ends
    callbacks = [OnlineCalibration(), checkpoint, on_a_timer, PublishBest(checkpoint, best), RNGStates(), cost]
    callbacks.append(ResumeDataPosition())
    trainer = L.Trainer(
        default_root_dir=run_dir,
        logger=loggers,
        callbacks=[*callbacks, LearningRateMonitor(logging_interval="step")],
        plugins=[AtomicCheckpointIO()],
        deterministic=True,
        **config.get("trainer", {}),
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    train_wall_s = time.perf_counter() - start
    metrics: dict[str, float] = {}
    if evaluate_test:
        (test,) = trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=False)
        metrics = {"test_acc": test["test/acc"], "test_loss": test["test/loss"]}
    metrics["best_val_acc"] = float(checkpoint.best_model_score)
    scored = datamodule.datasets["test" if evaluate_test else "val"]
    metrics["constant_predictor_acc"] = constant_predictor_accuracy(datamodule.datasets["train"], scored)
    costs = {**cost.summary(), "train_wall_s": train_wall_s, "resumed": resume_from is not None}
    finish_logger_runs(loggers, summary={f"cost/{key}": value for key, value in costs.items()})

    online = online_asap(module.model, datamodule) if evaluate_test and online_layers(module.model) else None
    record = {
        "task": config["task"],
        "variant": config["variant"],
        "seed": config["seed"],
        "metrics": metrics,
        "cost": {**costs, "device_type": module.device.type},
        "checkpoints": {
            "best": portable_path(best),
            "last": portable_path(checkpoint.last_model_path),
        },
        "num_parameters": sum(p.numel() for p in module.parameters()),
        "config": config,
        "provenance": provenance(),
    }
    if online is not None:
        record["online_asap"] = online
    write_json_atomic(result_path, record)
    return record


def online_asap(teacher: nn.Module, datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The teacher (the best checkpoint's weights) compiled from its online dual maps, compared with it on the
    test split, and the maps' scores on the last validation epoch of that checkpoint."""
    from asap.bench.agreement import compare_predictions, predictions

    student = compile_online(teacher)
    teacher_logits, labels = predictions(teacher, datamodule.test_dataloader())
    logits, _ = predictions(student, datamodule.test_dataloader())
    comparison = compare_predictions(logits, teacher_logits, labels)
    report = online_report(teacher)
    return {**comparison, "report": report.to_dict("records")}


def train_task(
    task: str,
    variant: str,
    seed: int = 0,
    *,
    profile: str = DEFAULT_PROFILE,
    config: str | Path | None = None,
    config_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path = "data",
    runs_dir: str | Path = "runs",
    results_dir: str | Path = "results",
    run_dir: str | Path | None = None,
    result: str | Path | None = None,
    wandb: bool = True,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> tuple[dict, Path]:
    """Train one (task, variant, seed) from its config (``config``, or ``<config dir>/<profile>/<task>.yaml``,
    see :func:`asap.train.config.config_dir`) with dotted ``overrides``; checkpoints and logs go to ``run_dir``
    (default ``<runs_dir>/<profile>/<task>/<variant>/seed<seed>``) and the record to ``result`` (default
    ``<results_dir>/<profile>/train/<task>/<variant>/seed<seed>.json``); a killed run resumes when the same
    command runs again (:func:`train`, checkpoints every ``checkpoint_every_s``). Returns the record and its path."""
    task_config = apply_overrides(load_task_config(task, profile, config, config_dir), list(overrides))
    run_config_ = run_config(task_config, variant, seed, profile)
    if not wandb:
        run_config_.setdefault("logging", {})["wandb"] = False
    run = Path(task) / variant / f"seed{seed}"
    result = Path(result or Path(results_dir) / profile / "train" / f"{run}.json")
    run_dir = run_dir or Path(runs_dir) / profile / run
    record = train(run_config_, run_dir, result, data_dir, checkpoint_every_s=checkpoint_every_s)
    return record, result
