"""The installed package, away from the checkout: its configs travel with it and `asap train` runs anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed into a folder of its own (put first on PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("package")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = tmp.glob("asap-*.whl")
    site = tmp / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    return site


def asap_outside(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_asap_train_runs_from_outside_the_checkout(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = asap_outside(installed, elsewhere, "-c", "import asap.train.config as c; print(c.__file__, c.config_dir())")
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(installed), "the installed copy is imported, not the checkout"
    assert Path(configs) == installed / "asap" / "experiments" and (Path(configs) / "mini" / "listops.yaml").is_file()

    help_text = asap_outside(installed, elsewhere, "-m", "asap", "train", "--help").stdout
    assert "--profile mini: tasks listops" in help_text and "rotten_tomatoes" in help_text  # from the registries

    overrides = ["--set", "data.train_size=32", "--set", "data.test_size=16"]
    result = asap_outside(
        installed, elsewhere, "-m", "asap", "train", "--task", "listops", "--variant", "softmax", "--profile", "mini",
        "--no-wandb", *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((elsewhere / "results/mini/train/listops/softmax/seed0.json").read_text())
    assert record["config"]["profile"] == "mini" and record["config"]["data"]["train_size"] == 32
    assert (elsewhere / "runs/mini/listops/softmax/seed0/checkpoints/best.ckpt").is_file()


@pytest.mark.slow
def test_an_explicit_config_dir_takes_precedence(installed, tmp_path):
    configs = tmp_path / "my_configs" / "tiny"
    configs.mkdir(parents=True)
    text = (ROOT / "experiments/mini/listops.yaml").read_text()
    (configs / "listops.yaml").write_text(text.replace("train_size: 96", "train_size: 24"))
    result = asap_outside(
        installed, tmp_path, "-m", "asap", "data", "--task", "listops", "--profile", "tiny",
        "--config-dir", str(tmp_path / "my_configs"), "--out", "summary.json", "--no-wandb",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text())["sizes"]["train"] == 24
    missing = asap_outside(installed, tmp_path, "-m", "asap", "data", "--task", "listops", "--profile", "nope",
                           "--out", "x.json", "--no-wandb")  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("asap data: error: no config")
