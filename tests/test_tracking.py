"""W&B tracking of workflow jobs: identity, offline runs written and read back, failures, tracking off."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import wandb

from asap import tracking
from asap.tracking import job_identity, job_run, read_offline_run

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "results/default/compile/mnist/sinkhorn/seed0.csv"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Offline W&B writing under ``tmp_path`` (conftest tears wandb's setup down after every test, so this
    environment is the one wandb sets up with); ``finished(path)`` reads a run back once wandb has flushed it."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def finished(run_dir: Path) -> tracking.OfflineRun:
    wandb.teardown()  # the wandb service writes the transaction log asynchronously: stopping it flushes it
    return read_offline_run(run_dir)


def test_job_identity_names_groups_and_tags():
    identity = job_identity("compile", profile="default", task="mnist", variant="sinkhorn", seed=0)
    assert identity == {
        "group": "default/mnist",
        "job_type": "compile",
        "tags": ["profile:default", "task:mnist", "variant:sinkhorn", "seed:0"],
        "name": "compile-mnist-sinkhorn-seed0",
    }
    speed = job_identity("speed", profile="paper", extra={"mode": "inference"})
    assert speed["group"] == "paper" and speed["tags"] == ["profile:paper", "mode:inference"]
    assert speed["name"] == "speed-inference"
    assert job_identity("train", profile=None, task="listops", variant="sliced", seed=3)["group"] == "listops"
    with pytest.raises(ValueError, match="job_type"):
        job_identity("bench", profile="default")
    with pytest.raises(ValueError, match="seed"):
        job_identity("train", profile="default", task="mnist", seed=-1)
    with pytest.raises(ValueError, match="without '/'"):
        job_identity("train", profile="default", task="a/b")
    with pytest.raises(ValueError, match="at most 64"):
        job_identity("train", profile="default", variant="v" * 64)


def test_a_job_run_reads_back_with_identity_config_tables_summary_and_reference_artifact(offline):
    model = offline / "model.pt"
    model.write_bytes(b"weights")
    headlines = {f"many/{index}": index for index in range(2500)}  # one record longer than a 32 KiB log block
    with job_run(
        "compile", profile="default", task="mnist", variant="sinkhorn", seed=0, config={"slices": "auto"}
    ) as run:
        tracking.log_compile(run, pd.read_csv(CALIBRATION), operating_point={"slices": 32, "directions": "random"})
        run.summary(headlines)
        run.artifact(None, "compiled-model", model)
        run_dir = run.run_dir
    assert run_dir.parent == offline / "wandb", "written under WANDB_DIR"
    log = next(run_dir.glob("run-*.wandb"))
    back = finished(run_dir)
    assert log.stat().st_size > 32 * 1024

    assert (back.group, back.job_type, back.name) == ("default/mnist", "compile", "compile-mnist-sinkhorn-seed0")
    assert back.tags == ("profile:default", "task:mnist", "variant:sinkhorn", "seed:0")
    assert back.exit_code == 0
    assert back.config["slices"] == "auto" and back.config["task"] == "mnist" and back.config["seed"] == 0
    assert back.config["provenance"]["git_commit"] and "wandb" in back.config["provenance"]["versions"]
    report = pd.read_csv(CALIBRATION)
    assert set(back.tables) == {"compile/calibration", "compile/layers"}
    assert set(back.tables["compile/calibration"]) == {*report.columns, "layer_index"}
    assert back.tables["compile/layers"] == ["layer_index", "layer", "r2", "plan_error", "kl", "series"]
    assert back.summary["compile/r2_mean"] == pytest.approx(report["r2"].mean())
    assert back.summary["compile/slices"] == 32 and back.summary["compile/num_layers"] == 2
    assert all(back.summary[key] == value for key, value in headlines.items())
    [artifact] = [artifact for artifact in back.artifacts if artifact.type == "compiled-model"]
    assert artifact.name == "compiled-model-compile-mnist-sinkhorn-seed0"
    assert artifact.references == (model.resolve().as_uri(),) and artifact.files == (), "by reference, no copy"

    corrupt = offline / "corrupt"
    shutil.copytree(run_dir, corrupt)
    data = bytearray(log.read_bytes())
    data[100] ^= 0xFF
    (corrupt / log.name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt record"):
        read_offline_run(corrupt)
    with pytest.raises(ValueError, match="not an offline W&B run"):
        read_offline_run(offline)
    assert tracking.offline_runs(offline) == [run_dir]


def test_a_failing_job_leaves_a_failed_run(offline):
    with pytest.raises(RuntimeError, match="job failed"):
        with job_run("frontier", profile="default", task="mnist", variant="sinkhorn", seed=0) as run:
            run.summary({"frontier/started": 1})
            run_dir = run.run_dir
            raise RuntimeError("job failed")
    back = finished(run_dir)
    assert back.exit_code == 1 and back.summary["frontier/started"] == 1 and back.job_type == "frontier"


@pytest.mark.parametrize("how", ["enabled=False", "WANDB_MODE=disabled"])
def test_tracking_off_writes_nothing_and_callers_need_not_branch(tmp_path, monkeypatch, how):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled" if how == "WANDB_MODE=disabled" else "offline")
    figure = tmp_path / "figure.png"
    figure.write_bytes(b"not read when off")
    with job_run("report", profile="default", enabled=how != "enabled=False", dir=tmp_path / "runs") as run:
        assert not run.enabled and run.run_dir is None
        run.table("report/runs", pd.DataFrame({"a": [1]}))
        run.summary({"report/figures": 1})
        assert run.images([figure, tmp_path / "figure.pdf"]) == ["figures/figure"]
        run.artifact("figures", "figures", tmp_path)
        with pytest.raises(ValueError, match="DataFrame"):
            run.table("report/runs", [1, 2])  # bad input is an error whether or not tracking is on
    assert sorted(path.name for path in tmp_path.iterdir()) == ["figure.png"]


def test_bad_input_is_refused(tmp_path):
    run = tracking.JobRun(None, job_identity("report", profile="default"))
    with pytest.raises(ValueError, match="non-empty"):
        run.summary({"": 1.0})
    with pytest.raises(ValueError, match="share a file stem"):
        run.images([tmp_path / "a/speed.png", tmp_path / "b/speed.png"])
    with pytest.raises(FileNotFoundError, match="no such figure"):
        run.images([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="artifact names"):
        run.artifact("a model", "model", tmp_path)
    with pytest.raises(ValueError, match="columns"):
        tracking.log_frontier(run, pd.DataFrame({"accuracy": [0.5]}))
    with pytest.raises(ValueError, match="mode"):
        tracking.log_speed(run, pd.DataFrame(), "backward")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WANDB_MODE", "sometimes")
            tracking.wandb_mode()


def test_the_segments_of_a_resumed_run_read_back_as_one_run(offline):
    """A resumed job logs a second offline segment under its first one's id: read back, they are one run (config
    and summary updated, history keys gathered, the last segment's exit code); another run stays apart."""
    for step, key in enumerate(("loss_a", "loss_b")):
        run = wandb.init(project="asap-test", id="resumed1", resume="allow", job_type="train", config={"step": step})
        run.log({key: 1.0})
        run.summary["segment"] = step
        run.finish()
    other = wandb.init(project="asap-test", job_type="compile")
    other.finish()
    wandb.teardown()  # flush the transaction logs
    runs = tracking.read_offline_runs(offline)
    assert len(runs) == 2 and len(tracking.offline_runs(offline)) == 3
    (resumed,) = [run for run in runs if tracking.run_id(run.path) == "resumed1"]
    assert {"loss_a", "loss_b"} <= resumed.history_keys and resumed.summary["segment"] == 1
    assert resumed.config["step"] == 1 and resumed.exit_code == 0 and resumed.job_type == "train"
    with pytest.raises(ValueError, match="different runs"):
        tracking.merge_segments([read_offline_run(path) for path in tracking.offline_runs(offline)])
