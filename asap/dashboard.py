"""The paper's panels as a W&B workspace, built with W&B's own API (``wandb-workspaces``) from the runs the
workflow logged (:mod:`asap.tracking`) once they are synced.

Sections: accuracy by task and variant, the accuracy-cost frontier, latency and peak memory against ``n``,
calibration per layer (R² and plan error; the downstream calibration curve), training cost, and the report's
figures. Each panel reads keys that one job type logs; :func:`panel_keys` lists them from the panels
themselves, so what the dashboard expects and what :func:`missing_keys` checks on logged runs cannot drift.
Building a workspace needs no network; only :func:`save_workspace` talks to W&B.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from asap.tracking import OfflineRun

WORKSPACE_NAME = "asap benchmark"
# The report's figures (asap.report.build_report writes each as <stem>.png and .pdf).
REPORT_FIGURES = ("frontier", "accuracy_sweeps", "dual_map_r2", "training_cost", "calibration_curve", "speed")


def _chart(title: str, table: str, preset: str, **fields: str) -> wr.CustomChart:
    """A W&B preset chart (``wandb/<preset>/v0``) drawn from the table ``table`` in each run's summary: the
    chart ``wandb.plot`` makes, here for tables logged as data."""
    return wr.CustomChart(
        query={"summaryTable": {"tableKey": table}},
        chart_name=f"wandb/{preset}/v0",
        chart_fields=fields,
        chart_strings={"title": title},
    )


def _line(title: str, table: str, x: str, y: str) -> wr.CustomChart:
    """``y`` against ``x``, one line per value of the table's ``series`` column."""
    return _chart(title, table, "line", x=x, y=y, stroke="series")


def _scatter(title: str, table: str, x: str, y: str) -> wr.CustomChart:
    return _chart(title, table, "scatter", x=x, y=y)


def _bars(title: str, table: str, value: str) -> wr.CustomChart:
    """One bar per row of ``table`` (its ``label`` column)."""
    return _chart(title, table, "bar", label="label", value=value)


def _by(title: str, metric: str, config: str) -> wr.BarPlot:
    """A summary metric averaged over the runs sharing the config value ``config`` (spread: standard deviation)."""
    return wr.BarPlot(
        title=title,
        metrics=[wr.SummaryMetric(metric)],
        groupby=wr.Config(config),
        groupby_aggfunc="mean",
        groupby_rangefunc="stddev",
    )


def _sections() -> list[tuple[str, list[tuple[str, Any]]]]:
    """(section name, [(job type whose runs the panel reads, panel)]), in display order."""
    accuracy = [
        ("report", _bars("Test accuracy by task/variant (mean over seeds)", "report/runs", "test_acc")),
        ("report", wr.WeavePanelSummaryTable(table_name="report/runs")),
        ("train", _by("Test accuracy by variant (train and fine-tune runs)", "test/acc", "variant")),
    ]
    frontier = [
        (
            "frontier",
            _scatter("Accuracy against latency at the model's n", "frontier", "latency_ms_nmodel", "accuracy"),
        ),
        (
            "frontier",
            _scatter("Agreement with the teacher against latency", "frontier", "latency_ms_nmodel", "agreement"),
        ),
        ("frontier", _by("ASAP - teacher accuracy at the operating point", "frontier/accuracy_diff", "task")),
        ("frontier", _by("ASAP speed-up over the teacher at the model's n", "frontier/speedup_vs_teacher", "task")),
        ("frontier", wr.WeavePanelSummaryTable(table_name="frontier")),
    ]
    speed = [
        ("speed", _line(f"{mode.capitalize()}: {label} against n", f"speed/{mode}", "seq_len", column))
        for mode in ("inference", "training")
        for label, column in (("latency (ms)", "latency_ms"), ("peak memory (MB)", "peak_mem_mb"))
    ]
    calibration = [
        ("compile", _line("Held-out R² per layer (mean over heads)", "compile/layers", "layer_index", "r2")),
        ("compile", _line("Plan error per layer (mean over heads)", "compile/layers", "layer_index", "plan_error")),
        ("compile", _by("Mean held-out R², by task", "compile/r2_mean", "task")),
        ("compile", _by("Mean plan error, by task", "compile/plan_error_mean", "task")),
        (
            "downstream",
            _line("Accuracy recovered against calibration samples", "downstream", "calib_samples", "recovered"),
        ),
        ("compile", wr.WeavePanelSummaryTable(table_name="compile/calibration")),
    ]
    step_time = wr.LinePlot(title="Step time (ms) in training", y=["train/step_time_ms"], groupby=wr.Config("variant"))
    cost = [
        ("report", _bars("Median step time (ms) by task/variant", "report/runs", "step_time_ms_median")),
        ("report", _bars("Training wall time (s) by task/variant", "report/runs", "train_wall_s")),
        ("report", _bars("Peak step memory (MB) by task/variant", "report/runs", "step_peak_mem_mb")),
        ("train", step_time),
        ("train", _by("Peak step memory (MB) by variant", "train/step_peak_mem_mb", "variant")),
    ]
    media = [f"figures/{stem}" for stem in REPORT_FIGURES]
    figures = [("report", wr.MediaBrowser(title="Report figures", media_keys=media, num_columns=3))]
    return [
        ("Accuracy by task and variant", accuracy),
        ("Accuracy-cost frontier", frontier),
        ("Latency and peak memory against n", speed),
        ("Calibration per layer", calibration),
        ("Training cost", cost),
        ("Report figures", figures),
    ]


def build_workspace(entity: str, project: str = "asap", name: str = WORKSPACE_NAME) -> ws.Workspace:
    """The dashboard as a ``wandb_workspaces`` workspace of ``entity/project`` (not saved: :func:`save_workspace`).
    The runs table shows task, variant, seed and test accuracy; runs carry group ``<profile>/<task>``, the job
    type and tags, to filter by in the app."""
    if not entity or not isinstance(entity, str):
        raise ValueError(f"entity must be a W&B user or team name, got {entity!r}")
    if not project or not isinstance(project, str):
        raise ValueError(f"project must be a non-empty string, got {project!r}")
    sections = [
        ws.Section(name=title, panels=[panel for _, panel in panels], is_open=True) for title, panels in _sections()
    ]
    columns = ["run:displayName", "config:task", "config:variant", "config:seed", "summary:test/acc"]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=sections,
        runset_settings=ws.RunsetSettings(pinned_columns=columns),
    )


def save_workspace(workspace: ws.Workspace) -> str:
    """Save ``workspace`` to W&B (needs the network and ``wandb login``) and return its URL."""
    workspace.save()
    return workspace.url


def panel_references(panel: Any) -> dict[str, set[str]]:
    """The keys ``panel`` reads from a run (summary or history keys, tables, images), each with the table
    columns it reads (empty for a scalar or an image)."""
    if isinstance(panel, wr.CustomChart):
        return {panel.query["summaryTable"]["tableKey"]: set(panel.chart_fields.values())}
    if isinstance(panel, wr.WeavePanelSummaryTable):
        return {panel.table_name: set()}
    if isinstance(panel, wr.BarPlot):
        return {getattr(metric, "name", metric): set() for metric in panel.metrics}
    if isinstance(panel, wr.LinePlot):
        return {getattr(metric, "name", metric): set() for metric in panel.y}
    if isinstance(panel, wr.MediaBrowser):
        return {key: set() for key in panel.media_keys}
    raise ValueError(f"no rule for the keys a {type(panel).__name__} reads")


def panel_keys() -> dict[str, dict[str, frozenset[str]]]:
    """Per job type, the keys its runs must have for the panels (and, per table, the columns the charts read)."""
    keys: dict[str, dict[str, set[str]]] = {}
    for _, panels in _sections():
        for job_type, panel in panels:
            for key, columns in panel_references(panel).items():
                keys.setdefault(job_type, {}).setdefault(key, set()).update(columns)
    return {job: {key: frozenset(columns) for key, columns in tables.items()} for job, tables in keys.items()}


PANEL_KEYS = panel_keys()


def missing_keys(runs: Iterable[OfflineRun], job_types: Iterable[str] | None = None) -> dict[str, list[str]]:
    """What the panels read that ``runs`` (read back with :func:`asap.tracking.read_offline_run`) lack, per job
    type: keys no run of that type logged, and ``key[column]`` for table columns none of their tables has.
    ``job_types`` defaults to the types among ``runs``; a type without runs lacks every key."""
    runs = list(runs)
    job_types = sorted({run.job_type for run in runs} if job_types is None else set(job_types))
    missing = {}
    for job_type in job_types:
        typed = [run for run in runs if run.job_type == job_type]
        logged = set().union(*(run.keys for run in typed))
        lacking = []
        for key, columns in sorted(PANEL_KEYS.get(job_type, {}).items()):
            if key not in logged:
                lacking.append(key)
                continue
            have = set().union(*(run.tables.get(key, []) for run in typed))
            lacking += [f"{key}[{column}]" for column in sorted(columns - have)]
        missing[job_type] = lacking
    return missing
