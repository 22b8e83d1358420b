"""The report job: every table and figure of a profile, from its ``results/`` only."""

from __future__ import annotations

from pathlib import Path

from asap.provenance import provenance, write_json_atomic
from asap.report import collect, figures, tables
from asap.report.frontier import (
    calibration_table,
    compile_options_table,
    fixed_length,
    layer_options_table,
    operating_point_table,
)
from asap.report.headline import headline_caption, headline_table


def build_report(results: str | Path, out: str | Path) -> list[Path]:
    """Write every table (Markdown + LaTeX + HTML) and figure (PNG + PDF) of ``results`` into ``out``."""
    results, out = Path(results), Path(out)
    runs = collect.train_runs(results)
    frontier = collect.bench_tables(results, "frontier")
    downstream = collect.bench_tables(results, "downstream")
    reports = collect.calibration_reports(results)
    finetuned = collect.finetune_records(results)
    speed = {mode: collect.speed_table(results, mode) for mode in ("inference", "training")}
    written = [
        *tables.write_table(
            tables.accuracy_table(runs, frontier, finetuned),
            out / "accuracy",
            "Test accuracy (%) by task and attention; ASAP compiled from the T = 3 teacher, and fine-tuned",
        ),
        *tables.write_table(
            compile_options_table(frontier, finetuned),
            out / "compile_options",
            "Accuracy recovery (ASAP / teacher test accuracy) of each compile option at the operating point",
        ),
        *tables.write_table(
            layer_options_table(frontier),
            out / "compile_options_layers",
            "Every compile option at the operating point: held-out calibration plan error per layer, test plan "
            "error, accuracy recovery and speed-up over the teacher",
        ),
        *tables.write_table(
            calibration_table(reports),
            out / "calibration",
            "Held-out calibration scores per layer: the ridge map and the deployed (KL-fitted) map",
        ),
        *tables.write_table(tables.training_cost_table(runs), out / "training_cost", "Training cost per variant"),
        *tables.write_table(headline_table(results), out / "headline", headline_caption(results)),
        *tables.write_table(
            operating_point_table(frontier),
            out / "frozen_layer",
            "Frozen teacher replaced without retraining, at ASAP's operating point (whole test split)",
        ),
        *figures.frontier(frontier, out / "frontier", fixed_length(frontier)),
        *figures.sweeps(frontier, out / "accuracy_sweeps"),
        *figures.dual_map_r2(reports, out / "dual_map_r2"),
        *figures.training_cost(runs, out / "training_cost"),
        *figures.calibration_curve(downstream, out / "calibration_curve"),
        *figures.speed(speed["inference"], speed["training"], out / "speed"),
        *tables.write_table(
            tables.speed_table(speed["inference"], speed["training"]),
            out / "speed",
            "One attention layer: latency ratios and peak memory (reference shape and the compiled models' shapes)",
        ),
    ]
    jobs = collect.job_costs(results)
    if len(jobs):
        caption = "Workflow cost: wall time per rule (minutes, jobs run one at a time) and peak memory"
        written += tables.write_table(tables.workflow_cost_table(jobs), out / "workflow_cost", caption)
    sources = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.suffix in {".json", ".csv", ".npz"})
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
