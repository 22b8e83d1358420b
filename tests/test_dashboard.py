"""The W&B dashboard: built offline, and every key its panels read is logged by the job that owns it."""

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
import wandb

from asap import dashboard, tracking
from asap.dashboard import PANEL_KEYS, build_workspace, missing_keys, panel_references

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results/default"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("building the dashboard must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(wandb, "Api", refuse)


def test_the_workspace_is_built_offline_with_the_papers_panels(no_network):
    workspace = build_workspace("someone", "asap")
    assert (workspace.entity, workspace.project) == ("someone", "asap")
    assert [section.name for section in workspace.sections] == [
        "Accuracy by task and variant",
        "Accuracy-cost frontier",
        "Latency and peak memory against n",
        "Calibration per layer",
        "Training cost",
        "Report figures",
    ]
    assert all(section.panels for section in workspace.sections)
    payload = workspace._to_model().model_dump_json(by_alias=True)  # what save() would send
    for keys in PANEL_KEYS.values():
        for key, columns in keys.items():
            assert key in payload, key  # quoted for tables and media, summary_metrics.<key> for bar charts
            assert all(json.dumps(column) in payload for column in columns), (key, columns)
    with pytest.raises(ValueError, match="entity"):
        build_workspace("")


def test_panel_keys_come_from_the_panels():
    referenced = {}
    for section in build_workspace("someone").sections:
        for panel in section.panels:
            keys = panel_references(panel)
            assert keys, f"{type(panel).__name__} in {section.name} reads nothing"
            referenced.update(keys)
    declared = {key: columns for keys in PANEL_KEYS.values() for key, columns in keys.items()}
    assert set(referenced) == set(declared)
    assert all(set(columns) <= declared[key] for key, columns in referenced.items())
    assert set(PANEL_KEYS) == {"train", "compile", "frontier", "downstream", "speed", "report"}
    with pytest.raises(ValueError, match="no rule"):
        panel_references(object())


def test_the_figure_panel_shows_what_the_report_writes():
    written = {path.stem for path in (ROOT / "paper_figures/default").glob("*.png")}
    assert set(dashboard.REPORT_FIGURES) == written


def test_every_job_logs_what_its_panels_read(tmp_path, monkeypatch):
    """Each job's runs, logged with the helpers the CLI calls on committed results and read back offline,
    have every key (and table column) the dashboard reads."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    seed0 = {"profile": "default", "task": "mnist", "variant": "sinkhorn", "seed": 0}
    frontier = pd.read_csv(RESULTS / "bench/frontier/mnist/sinkhorn/seed0.csv")
    with tracking.job_run("compile", **seed0, dir=tmp_path) as run:
        tracking.log_compile(run, pd.read_csv(RESULTS / "compile/mnist/sinkhorn/seed0.csv"))
    with tracking.job_run("frontier", **seed0, dir=tmp_path) as run:
        tracking.log_frontier(run, frontier)
    with tracking.job_run("downstream", **seed0, dir=tmp_path) as run:
        tracking.log_downstream(run, pd.read_csv(RESULTS / "bench/downstream/mnist/sinkhorn/seed0.csv"))
    for mode in ("inference", "training"):
        with tracking.job_run("speed", profile="default", extra={"mode": mode}, dir=tmp_path) as run:
            tracking.log_speed(run, pd.read_csv(RESULTS / f"bench/speed/{mode}.csv"), mode)
    figures = sorted((ROOT / "paper_figures/default").glob("*.p[nd][gf]"))  # PNG and PDF, as build_report returns
    with tracking.job_run("report", profile="default", dir=tmp_path) as run:
        tracking.log_report(run, RESULTS, figures)
    wandb.teardown()  # flush the transaction logs
    runs = [tracking.read_offline_run(path) for path in tracking.offline_runs(tmp_path)]

    assert sorted(run.job_type for run in runs) == ["compile", "downstream", "frontier", "report", "speed", "speed"]
    assert all(run.exit_code == 0 for run in runs)
    jobs = set(PANEL_KEYS) - {"train"}  # the training run's keys: tests/test_train.py, on a real fit
    assert missing_keys(runs, jobs) == {job: [] for job in jobs}

    by_job = {run.job_type: run for run in runs}
    point = frontier[frontier["operating_point"]].iloc[0]
    assert by_job["frontier"].summary["frontier/asap_accuracy"] == pytest.approx(point["accuracy"])
    assert by_job["frontier"].summary["frontier/speedup_vs_teacher"] == pytest.approx(point.speedup_vs_teacher_nmodel)
    assert by_job["report"].summary["report/figures"] == len([path for path in figures if path.suffix == ".png"])
    assert by_job["report"].images == {f"figures/{stem}" for stem in dashboard.REPORT_FIGURES}
    speed = next(run for run in runs if "mode:inference" in run.tags)
    assert speed.summary["speed/inference/seq_len"] > 0 and "speed/inference/latency_ms/sinkhorn" in speed.summary

    assert missing_keys([by_job["frontier"]], ["frontier", "speed"]) == {
        "frontier": [],
        "speed": sorted(PANEL_KEYS["speed"]),
    }
    without_agreement = tracking.OfflineRun(
        path=tmp_path, job_type="frontier", summary=by_job["frontier"].summary, tables={"frontier": ["accuracy"]}
    )
    assert missing_keys([without_agreement]) == {"frontier": ["frontier[agreement]", "frontier[latency_ms_nmodel]"]}
