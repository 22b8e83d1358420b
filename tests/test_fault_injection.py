"""The workflow killed at seeded random moments: every rerun (``--rerun-incomplete``) ends with the outputs of an
uninterrupted run, and no output is ever present half-written."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_workflow import ROOT, snakemake

# The data -> tiny train -> compile sub-workflow of the mini profile: every kind of job a kill can land in
COMPILE_TARGET = "results/mini/compile/listops/sinkhorn/seed0.operating_point.json"
# Columns and keys that measure time (or choose by it) or say where and when a job ran, not what it computed
VOLATILE = ("provenance", "cost", "jobs", "logs", "elapsed", "wall", "time", "latency", "speedup", "_vs_", "noise")
VOLATILE += ("load_", "block_calls", "strongest", "fastest", "ratio", "limit", "peak_mem", "rounds", "throughput")
VOLATILE += ("kernels", "_ms", "_s")  # kernels: the profiler breakdown, operators ordered by their time


def _volatile(key: str) -> bool:
    return any(part in key if not part.startswith("_") else key.endswith(part) for part in VOLATILE)


def comparable(value):
    """``value`` without its volatile keys, recursively, NaN as a string (so that equal files compare equal)."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if not _volatile(str(key))}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def outputs(work: Path) -> dict[str, object]:
    """Every result file under ``work/results``, parsed (a half-written file fails to parse), volatile parts
    dropped, and every checkpoint's weights under ``work/runs``."""
    found = {}
    for path in sorted((work / "results").rglob("*")):
        relative = str(path.relative_to(work))
        if path.suffix == ".json" and not _volatile(relative):
            found[relative] = comparable(json.loads(path.read_text()))
        elif path.suffix == ".csv" and not _volatile(relative):
            table = pd.read_csv(path)
            found[relative] = comparable(table[[c for c in table.columns if not _volatile(c)]].to_dict("list"))
    for path in sorted((work / "runs").rglob("*.ckpt")):
        found[str(path.relative_to(work))] = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return found


def _workdir(tmp_path: Path, name: str) -> Path:
    work = tmp_path / name
    (work / "wandb").mkdir(parents=True)
    (work / "experiments").symlink_to(ROOT / "experiments")
    return work


def _command(work: Path, target: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
        "--cores", "2", "--configfile", str(work / "experiments/mini.yaml"), "--rerun-incomplete", target,
    ]  # fmt: skip


def _equal(expected, found, where: str) -> None:
    if isinstance(expected, dict) and expected and all(isinstance(v, torch.Tensor) for v in expected.values()):
        assert expected.keys() == found.keys(), where
        for name in expected:
            assert torch.equal(expected[name], found[name]), f"{where}: {name}"
    else:
        assert expected == found, where


def kill_and_compare(tmp_path: Path, target: str, kills: int, seed: int = 0) -> dict[str, int]:
    """Run ``target`` uninterrupted; then kill a second run's whole process tree ``kills`` times at seeded
    moments (percent of the first run's wall time), unlock and rerun with ``--rerun-incomplete`` after each, and
    compare every output with the first run's. Returns the kills made and the outputs compared."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    reference = _workdir(tmp_path, "reference")
    start = time.monotonic()
    done = subprocess.run(
        _command(reference, target), env={**env, "WANDB_DIR": str(reference / "wandb")}, capture_output=True,
        text=True, cwd=reference,
    )  # fmt: skip
    span = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    expected = outputs(reference)
    assert any(name.endswith("best.ckpt") for name in expected)

    work = _workdir(tmp_path, "killed")
    env["WANDB_DIR"] = str(work / "wandb")
    moments = sorted(random.Random(seed).sample(range(10, 90), kills))
    killed = 0
    for percent in moments:  # each rerun starts over from what the kills left: later moments reach further
        process = subprocess.Popen(
            _command(work, target), env=env, cwd=work, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(span * percent / 100)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the whole tree: snakemake and the job it runs
            killed += 1
        process.wait()
        outputs(work)  # whatever a kill left must parse: nothing half-written
        unlock = snakemake("--unlock", "--cores", "2", "--configfile", str(work / "experiments/mini.yaml"), cwd=work)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
    done = subprocess.run(_command(work, target), env=env, capture_output=True, text=True, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    found = outputs(work)
    assert found.keys() == expected.keys(), f"outputs lost or left over: {sorted(found.keys() ^ expected.keys())}"
    for name in expected:
        _equal(expected[name], found[name], name)
    return {"kills": killed, "outputs": len(expected)}


@pytest.mark.slow
def test_killed_twice_the_data_train_compile_workflow_ends_with_the_uninterrupted_outputs(tmp_path):
    report = kill_and_compare(tmp_path, COMPILE_TARGET, kills=2)
    assert report["kills"] == 2, f"the run ended before a kill: {report}"
    print(report)


@pytest.mark.workflow
def test_killed_five_times_the_whole_mini_workflow_ends_with_the_uninterrupted_outputs(tmp_path):
    report = kill_and_compare(tmp_path, "all", kills=5, seed=1)
    assert report["kills"] == 5, f"the run ended before a kill: {report}"
    print(report)
