"""A short fine-tune of a compiled ASAP model: the cheapest way to recover what compiling lost.

Starts from a compiled file (:func:`asap.compiler.save_compiled`), trains it for a few hundred steps on the
teacher's task with the teacher's optimiser settings (learning rate scaled by ``lr_scale``), either every weight
(``params="all"``) or the dual maps only (``params="maps"``), tests it before and after, and writes the fine-tuned
model (compiled format) and a run record. Logged like a training run (CSV, and W&B offline unless disabled).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

from asap.compiler.io import check_fits, read_compiled, save_compiled
from asap.data import create_datamodule
from asap.models import create_model
from asap.provenance import provenance, write_json_atomic
from asap.tracking import finish_logger_runs
from asap.train.callbacks import StepCost
from asap.train.module import Classifier
from asap.train.run import loggers_for

PARAMS = ("all", "maps")


def trainable_parameters(module: Classifier, params: str) -> list[str]:
    """Freeze all but ``params`` (``"all"`` or ``"maps"``: the ASAP layers' dual maps); their names."""
    if params not in PARAMS:
        raise ValueError(f"params must be one of {PARAMS}, got {params!r}")
    names = []
    for name, parameter in module.model.named_parameters():
        parameter.requires_grad_(params == "all" or ".dual_map." in name)
        if parameter.requires_grad:
            names.append(name)
    if not names:
        raise ValueError("nothing to fine-tune: the model has no ASAP dual map")
    return names


def finetune(
    compiled: str | Path,
    run_dir: str | Path,
    result_path: str | Path,
    out: str | Path,
    data_dir: str | Path = "data",
    steps: int = 300,
    params: str = "all",
    lr_scale: float = 0.1,
    val_every: int = 100,
    seed: int = 0,
    wandb: bool = True,
) -> dict[str, Any]:
    """Fine-tune the compiled model at ``compiled`` for ``steps`` steps; write the model to ``out`` and the record
    (test accuracy before and after, trained parameters, cost, provenance) to ``result_path``, last."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    payload = read_compiled(compiled)
    run = payload["metadata"].get("run")
    if run is None:
        raise ValueError(f"{compiled} records no training run: it cannot be fine-tuned on its task")
    missing = [key for key in ("task", "variant", "seed", "optim") if key not in run]
    if missing:
        raise ValueError(f"{compiled}: its training run record lacks {', '.join(missing)}")
    with torch.random.fork_rng():  # the weights must fit their model before any data is touched; no RNG drawn
        try:
            model = create_model(**payload["model_args"])
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{compiled}: its model_args build no model ({error})") from error
        check_fits(payload, model, compiled)
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = create_datamodule(run["task"], data_dir=data_dir, seed=seed, **run.get("data", {}))
    datamodule.prepare_data()
    datamodule.setup("fit")
    optim = {**run["optim"], "lr": run["optim"]["lr"] * lr_scale}
    config = {**run, "variant": f"{run['variant']}_asap_finetuned", "seed": seed}
    config["logging"] = {**run.get("logging", {}), "wandb": wandb and run.get("logging", {}).get("wandb", True)}
    module = Classifier(model=payload["model_args"], optim=optim, run=config)
    module.model.load_state_dict(payload["state_dict"])
    trained = trainable_parameters(module, params)

    cost = StepCost()
    trainer = L.Trainer(
        default_root_dir=run_dir,
        logger=loggers_for(config, Path(run_dir), job_type="finetune"),
        callbacks=[cost, LearningRateMonitor(logging_interval="step")],
        max_steps=steps,
        val_check_interval=min(val_every, steps),
        check_val_every_n_epoch=None,
        gradient_clip_val=run.get("trainer", {}).get("gradient_clip_val"),
        enable_checkpointing=False,
        deterministic=True,
        log_every_n_steps=20,
        enable_progress_bar=False,
    )
    (before,) = trainer.test(module, datamodule=datamodule, verbose=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    wall_s = time.perf_counter() - start
    (after,) = trainer.test(module, datamodule=datamodule, verbose=False)
    metadata = {**payload["metadata"], "finetune": {"steps": steps, "params": params, "lr": optim["lr"]}}
    metadata.pop("provenance", None)
    save_compiled(module.model, out, payload["model_args"], metadata)
    name = f"finetuned-{run['task']}-{run['variant']}-seed{run['seed']}"
    summary = {"test/acc_compiled": before["test/acc"], **{f"cost/{k}": v for k, v in cost.summary().items()}}
    finish_logger_runs(trainer.loggers, summary=summary, artifacts=[(name, "compiled-model", out)])
    record = {
        "task": run["task"],
        "teacher": run["variant"],
        "seed": run["seed"],
        "metrics": {"test_acc_compiled": before["test/acc"], "test_acc": after["test/acc"]},
        "finetune": {"steps": steps, "params": params, "lr": optim["lr"], "trained_tensors": len(trained)},
        "cost": {**cost.summary(), "finetune_wall_s": wall_s},
        "compiled": str(compiled),
        "out": str(out),
        "provenance": provenance(),
    }
    write_json_atomic(result_path, record)
    return record
