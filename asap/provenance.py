"""Where a result came from: git commit, device, library versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

LIBRARIES = ("asap", "torch", "timm", "lightning", "datasets", "wandb", "pandas", "numpy")


def git_commit() -> str:
    """The checkout's commit, suffixed ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


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
        "device": device_name(),
        "host": platform.node(),
        "versions": library_versions(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write JSON through a temporary file and a rename, so a crash never leaves a half-written result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path
