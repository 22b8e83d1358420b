"""Read logged results (run records, benchmark CSVs) into tidy pandas tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from asap.results import bench_table_paths

TRAIN_COLUMNS = ("test_acc", "best_val_acc", "step_time_ms_median", "step_peak_mem_mb", "train_wall_s", "steps")
TRAIN_COLUMNS += ("constant_predictor_acc",)


def train_runs(results: str | Path) -> pd.DataFrame:
    """One row per training run record ``train/<task>/<variant>/seed<k>.json``."""
    rows = []
    for path in sorted(Path(results).glob("train/*/*/seed*.json")):
        record = json.loads(path.read_text())
        row = {"task": record["task"], "variant": record["variant"], "seed": record["seed"]}
        row.update({key: {**record["metrics"], **record["cost"]}.get(key) for key in TRAIN_COLUMNS})
        online = record.get("online_asap", {})  # a teacher run with online maps: its compiled model on the test split
        row.update(online_asap_acc=online.get("accuracy"), online_asap_agreement=online.get("agreement"))
        row.update(git_commit=record["provenance"]["git_commit"], device=record["provenance"]["device"])
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no run records under {results}/train")
    return pd.DataFrame(rows)


def bench_tables(results: str | Path, kind: str) -> pd.DataFrame:
    """All ``bench/<kind>/<task>/<teacher>/seed<k>.csv`` tables of one kind (``frontier``, ``downstream``),
    concatenated."""
    table = pd.concat([pd.read_csv(path) for path in bench_table_paths(results, kind)], ignore_index=True)
    if "two_sided" in table:  # True, False or "auto" (read back as strings when mixed)
        table["two_sided"] = table["two_sided"].map(lambda side: {"True": True, "False": False}.get(side, side))
    return table


def finetune_records(results: str | Path) -> pd.DataFrame:
    """One row per fine-tune record ``finetune/<task>/<teacher>/seed<k>.json`` (empty if none)."""
    rows = []
    for path in sorted(Path(results).glob("finetune/*/*/seed*.json")):
        record = json.loads(path.read_text())
        rows.append(
            {
                "task": record["task"],
                "teacher": record["teacher"],
                "seed": record["seed"],
                **record["metrics"],
                **record["finetune"],
                "finetune_wall_s": record["cost"]["finetune_wall_s"],
            }
        )
    return pd.DataFrame(rows, columns=["task", "teacher", "seed", "test_acc", "test_acc_compiled", "steps", "params"])


def job_costs(results: str | Path) -> pd.DataFrame:
    """One row per workflow job from Snakemake's ``benchmark:`` records ``jobs/<rule>/...tsv`` (empty if none):
    wall time (s), peak resident memory (MB) and CPU time (s). The report's own record is left out."""
    rows = []
    for path in sorted(Path(results).glob("jobs/**/*.tsv")):
        job = path.relative_to(Path(results) / "jobs").with_suffix("")
        if job.parts == ("report",):
            continue
        record = pd.read_csv(path, sep="\t").iloc[-1]  # one line per repeat when a rule repeats: the last counts
        rows.append(
            {
                "rule": job.parts[0],
                "job": str(job),
                "wall_s": record["s"],
                "peak_rss_mb": record["max_rss"],
                "cpu_s": record["cpu_time"],
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "wall_s", "peak_rss_mb", "cpu_s"])


def calibration_reports(results: str | Path) -> pd.DataFrame:
    paths = sorted(Path(results).glob("compile/*/*/seed*.csv"))
    if not paths:
        raise FileNotFoundError(f"no calibration reports under {results}/compile")
    return pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)


def speed_table(results: str | Path, mode: str) -> pd.DataFrame:
    path = Path(results) / "bench" / "speed" / f"{mode}.csv"
    if not path.exists():
        raise FileNotFoundError(f"no {mode} speed table at {path}")
    return pd.read_csv(path)
