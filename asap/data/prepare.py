"""The data job behind ``asap data``: download or generate a task's data once, and summarise it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asap.data import create_datamodule
from asap.provenance import provenance, write_json_atomic
from asap.train.config import DEFAULT_PROFILE, load_task_config


def prepare_task_data(
    task: str,
    out: str | Path,
    *,
    profile: str = DEFAULT_PROFILE,
    data_dir: str | Path = "data",
    config_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Cache ``task``'s data as its ``profile`` config sets it up (sizes, lengths) under ``data_dir`` and write
    a summary (split sizes, data options, provenance) to ``out``; returns the summary."""
    data = load_task_config(task, profile, directory=config_dir).get("data", {})
    datamodule = create_datamodule(task, data_dir=data_dir, **data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    sizes = {split: len(dataset) for split, dataset in datamodule.datasets.items()}
    summary = {"task": task, "profile": profile, "sizes": sizes, "data": data}
    write_json_atomic(out, {**summary, "provenance": provenance()})
    return summary
