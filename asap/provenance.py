"""Where a result came from: git commit, device, library versions."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from asap.results import write_atomic

if TYPE_CHECKING:
    import pandas as pd

LIBRARIES = ("asap", "torch", "timm", "lightning", "datasets", "wandb", "pandas", "numpy")
ROOT = Path(__file__).resolve().parent.parent
# What a result depends on. The workflow rewrites the committed results/ and paper_figures/ while it runs, so
# "dirty" is judged on these paths only, or every record of a clean run would say -dirty.
CODE_PATHS = ("asap", "Snakefile", "experiments", "pyproject.toml", "uv.lock", "workflow")


def git_commit() -> str:
    """The checkout's commit, suffixed ``-dirty`` when the code (:data:`CODE_PATHS`) differs from it;
    ``unknown`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def lockfile_hash() -> str:
    """sha256 of ``uv.lock`` (the exact dependency set), or ``unknown`` outside a checkout."""
    try:
        return hashlib.sha256((ROOT / "uv.lock").read_bytes()).hexdigest()
    except OSError:
        return "unknown"


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    versions["torch"] = str(torch.__version__)  # keeps the build tag (+cpu, +cu128, ...)
    versions["cuda"] = torch.version.cuda or "none"
    return versions


def provenance() -> dict[str, Any]:
    return {
        "git_commit": git_commit(),
        "uv_lock_sha256": lockfile_hash(),
        "threads": torch.get_num_threads(),
        "device": device_name(),
        "host": platform.node(),
        "versions": library_versions(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write JSON through a temporary file and a rename, so a crash never leaves a half-written result."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_csv_atomic(table: pd.DataFrame, path: str | Path) -> Path:
    """A table as CSV, through a temporary file and a rename (as :func:`write_json_atomic`)."""
    return write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def write_table(table: pd.DataFrame, path: str | Path, info: dict[str, Any]) -> Path:
    """:func:`write_csv_atomic`, with ``<name>.provenance.json`` beside it holding ``info`` and
    :func:`provenance`."""
    path = write_csv_atomic(table, path)
    write_json_atomic(path.with_suffix(".provenance.json"), {**info, "provenance": provenance()})
    return path
