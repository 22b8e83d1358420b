"""Tables and figures generated from ``results/`` only (never typed by hand)."""

from __future__ import annotations

from pathlib import Path

from asap.provenance import provenance, write_json_atomic
from asap.report import collect, figures, tables


def build_report(results: str | Path, out: str | Path) -> list[Path]:
    """Write every table (Markdown + LaTeX) and figure (PNG + PDF) of ``results`` into ``out``."""
    results, out = Path(results), Path(out)
    runs = collect.train_runs(results)
    frozen = collect.bench_tables(results, "frozen")
    downstream = collect.bench_tables(results, "downstream")
    reports = collect.calibration_reports(results)
    speed = {mode: collect.speed_table(results, mode) for mode in ("inference", "training")}
    seq_len = collect.latency_lengths(frozen)[-1]
    written = [
        *tables.write_table(tables.accuracy_table(runs), out / "accuracy", "Test accuracy (%) by task and attention"),
        *tables.write_table(tables.training_cost_table(runs), out / "training_cost", "Training cost per variant"),
        *tables.write_table(
            tables.frozen_table(frozen, seq_len),
            out / "frozen_layer",
            f"Frozen teacher replaced without retraining (speed ratios at n={seq_len})",
        ),
        *figures.latency_vs_length(frozen, out / "latency_vs_length"),
        *figures.sweeps(downstream, out / "accuracy_sweeps"),
        *figures.dual_map_r2(reports, out / "dual_map_r2"),
        *figures.training_cost(runs, out / "training_cost"),
        *figures.calibration_curve(downstream, out / "calibration_curve"),
        *figures.speed(speed["inference"], speed["training"], out / "speed"),
        *tables.write_table(
            tables.speed_table(speed["inference"], speed["training"]),
            out / "speed",
            "One attention layer: latency ratios and peak memory",
        ),
    ]
    jobs = collect.job_costs(results)
    if len(jobs):
        caption = "Workflow cost: wall time per rule (minutes, jobs run one at a time) and peak memory"
        written += tables.write_table(tables.workflow_cost_table(jobs), out / "workflow_cost", caption)
    sources = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.suffix in {".json", ".csv"})
    written.append(
        write_json_atomic(
            out / "provenance.json",
            {
                "results": str(results),
                "sources": sources,
                "commits": sorted(set(runs.git_commit)),
                "report": provenance(),
            },
        )
    )
    return written
