"""Configs, the CLI and a short end-to-end fit: run record, checkpoints, determinism."""

import json

import pytest
import torch
import wandb
import yaml

from asap.__main__ import main
from asap.dashboard import missing_keys
from asap.tracking import offline_runs, read_offline_run
from asap.train import Classifier, apply_overrides, load_task_config, run_config, train
from asap.train.config import config_dir, validate_config

TINY_LISTOPS = {
    "task": "listops",
    "data": {"batch_size": 8, "train_size": 48, "val_size": 16, "test_size": 16, "min_len": 16, "max_len": 48},
    "model": {"name": "text_encoder", "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0},
    "variants": {"softmax": {}, "sinkhorn": {"n_iters": 2}, "sliced": {"num_slices": 2}},
    "optim": {"lr": 3.0e-3, "weight_decay": 0.0},
    "trainer": {"max_epochs": 1, "enable_progress_bar": False, "log_every_n_steps": 1, "enable_model_summary": False},
    "logging": {"wandb": False},
}


@pytest.mark.parametrize("path", sorted((config_dir() / "cpu").glob("*.yaml")), ids=lambda p: p.stem)
def test_cpu_configs_define_every_trained_variant(path):
    config = load_task_config(path.stem, "cpu")
    assert {"softmax", "sinkhorn", "sliced"} <= set(config["variants"])
    for section in ("data", "model", "optim", "trainer"):
        assert section in config, f"{path.name} lacks {section}"


def test_overrides_and_run_config():
    config = apply_overrides(TINY_LISTOPS, ["optim.lr=1e-2", "trainer.max_epochs=3", "model.new.key=[1, 2]"])
    assert config["optim"]["lr"] == 1e-2 and config["trainer"]["max_epochs"] == 3
    assert config["model"]["new"]["key"] == [1, 2]
    assert TINY_LISTOPS["optim"]["lr"] == 3.0e-3, "overrides must not mutate their input"
    run = run_config(config, "sinkhorn", seed=4)
    assert run["variant"] == "sinkhorn" and run["seed"] == 4 and run["attention_options"] == {"n_iters": 2}
    assert "variants" not in run
    budget = {**config, "variants": {"sliced": {"attention": {"num_slices": 1}, "set": ["trainer.max_epochs=5"]}}}
    sliced = run_config(budget, "sliced", seed=0)
    assert sliced["attention_options"] == {"num_slices": 1} and sliced["trainer"]["max_epochs"] == 5
    assert budget["trainer"]["max_epochs"] == 3, "per-variant overrides leave the task config alone"
    with pytest.raises(ValueError, match="not configured"):
        run_config(config, "asap", 0)
    long = {**config, "variants": {"sinkhorn_t10": {"normaliser": "sinkhorn", "attention": {"n_iters": 10}}}}
    teacher = run_config(long, "sinkhorn_t10", seed=0)
    assert teacher["variant"] == "sinkhorn_t10" and teacher["normaliser"] == "sinkhorn"
    assert teacher["attention_options"] == {"n_iters": 10} and run["normaliser"] == "sinkhorn"
    with pytest.raises(ValueError, match="unknown keys"):
        run_config({**config, "variants": {"x": {"normaliser": "sinkhorn", "n_iters": 10}}}, "x", 0)
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides(config, ["optim.lr"])
    with pytest.raises(FileNotFoundError, match="no config"):
        load_task_config("mnist", "no-such-profile")


@pytest.mark.slow
def test_fit_writes_a_complete_record_and_is_deterministic(tmp_path):
    config = run_config(TINY_LISTOPS, "sinkhorn", seed=1)
    records = [
        train(config, tmp_path / f"run{i}", tmp_path / f"result{i}.json", data_dir=tmp_path / "data") for i in range(2)
    ]
    record = json.loads((tmp_path / "result0.json").read_text())
    assert record["metrics"] == records[0]["metrics"] == records[1]["metrics"], "same seed, same metrics on CPU"
    assert 0.0 <= record["metrics"]["test_acc"] <= 1.0
    assert record["cost"]["steps"] == 6 and record["cost"]["step_time_ms_median"] > 0
    # above the RSS at the start of training: a step this tiny may not raise a high-water mark that earlier work
    # in the same process (other tests) already set, so 0 is possible; NaN or negative is not
    assert record["cost"]["step_peak_mem_mb"] >= 0
    assert record["config"]["attention_options"] == {"n_iters": 2}
    provenance = record["provenance"]
    assert provenance["git_commit"] and provenance["device"].startswith("cpu")
    assert provenance["versions"]["torch"] == torch.__version__
    metrics_csv = (tmp_path / "run0" / "csv" / "metrics.csv").read_text()
    for column in ("train/loss_step", "train/step_time_ms", "train/step_peak_mem_mb", "val/acc", "lr-AdamW"):
        assert column in metrics_csv, column

    model = Classifier.load_from_checkpoint(record["checkpoints"]["best"]).eval()
    assert model.variant == "sinkhorn"
    assert model.model.blocks[0].attn.normaliser.n_iters == 2


@pytest.mark.slow
def test_cli_trains_with_overrides_and_offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "listops.yaml"
    config_file.write_text(yaml.safe_dump({**TINY_LISTOPS, "logging": {"wandb": True}}))
    main(
        [
            "train",
            "--task",
            "listops",
            "--variant",
            "sliced",
            "--seed",
            "0",
            "--config",
            str(config_file),
            "--set",
            "data.batch_size=16",
        ]
    )
    record = json.loads((tmp_path / "results/cpu/train/listops/sliced/seed0.json").read_text())
    assert record["config"]["data"]["batch_size"] == 16 and record["cost"]["steps"] == 3
    assert (tmp_path / "runs/cpu/listops/sliced/seed0/progress/last.ckpt").exists()
    wandb.teardown()  # flush the offline run's transaction log
    [run_dir] = offline_runs(tmp_path / "runs/cpu/listops/sliced/seed0/wandb")
    run = read_offline_run(run_dir)
    assert (run.job_type, run.name, run.exit_code) == ("train", "train-listops-sliced-seed0", 0)
    assert {"task:listops", "variant:sliced", "seed:0"} <= set(run.tags) and run.group.endswith("listops")
    assert run.config["data"]["batch_size"] == 16 and run.config["provenance"]["git_commit"]
    assert missing_keys([run]) == {"train": []}, "the keys the dashboard reads from training runs"
    [checkpoint] = [artifact for artifact in run.artifacts if artifact.type == "checkpoint"]
    best = (tmp_path / "runs/cpu/listops/sliced/seed0/checkpoints/best.ckpt").resolve()
    assert checkpoint.references == (best.as_uri(),) and checkpoint.files == () and "best" in checkpoint.aliases


@pytest.mark.parametrize("path", sorted(config_dir().glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_has_only_keys_something_reads(path):
    config = yaml.safe_load(path.read_text())
    for variant in config["variants"]:
        validate_config(run_config(config, variant, seed=0))


@pytest.mark.parametrize(
    "override, section",
    [
        ("optim.lrr=1e-3", "optim"),
        ("trainer.max_epoch=1", "trainer"),
        ("data.batchsize=4", "data"),
        ("model.depht=3", "model"),
        ("logging.wandbb=false", "logging"),
        ("optimiser.lr=1", "top-level"),
    ],
)
def test_unknown_keys_are_an_error_naming_the_valid_ones(override, section):
    config = run_config(apply_overrides(TINY_LISTOPS, [override]), "sinkhorn", seed=0)
    with pytest.raises(ValueError, match=f"unknown {section} key.*valid {section} keys"):
        validate_config(config)
    validate_config(run_config(TINY_LISTOPS, "sinkhorn", seed=0))


def test_cli_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "mnistt", "--variant", "softmax"])
    lines = capsys.readouterr().err.strip().splitlines()  # (torch may log its own warnings on import)
    assert exit_info.value.code == 2 and "Traceback" not in "".join(lines)
    assert [line for line in lines if "error:" in line] == [lines[-1]] and lines[-1].startswith("asap train: error:")
    assert "invalid choice: 'mnistt'" in lines[-1] and "mnist" in lines[-1]  # the registry's tasks
    with pytest.raises(SystemExit):
        main(["train", "--task", "mnist", "--variant", "softmax", "--profile", "no-such-profile"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("asap train: error: no config") and "Traceback" not in "".join(lines)
    corrupt = tmp_path / "best.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit):
        main(["compile", "--checkpoint", str(corrupt), "--out", str(tmp_path / "x.pt")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("asap compile: error:") and "is not an asap training checkpoint" in lines[-1]
    assert "weights_only" not in lines[-1] and "Traceback" not in "".join(lines)


def test_records_name_checkpoints_relative_to_the_checkout(tmp_path, monkeypatch):
    from asap.train.run import portable_path

    monkeypatch.chdir(tmp_path)
    assert portable_path(tmp_path / "runs/x/best.ckpt") == "runs/x/best.ckpt"
    assert portable_path("/elsewhere/best.ckpt") == "/elsewhere/best.ckpt"
