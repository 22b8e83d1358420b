"""Tables, each written as Markdown, LaTeX and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

VARIANT_ORDER = ("softmax", "sinkhorn", "sliced")


def mean_std(values: pd.Series, scale: float = 100.0) -> str:
    """``"97.1 ± 0.3"`` (percent); a single seed shows no spread."""
    mean = values.mean() * scale
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {values.std() * scale:.1f}"


def accuracy_table(
    runs: pd.DataFrame,
    frontier: pd.DataFrame | None = None,
    finetuned: pd.DataFrame | None = None,
    teacher: str = "sinkhorn",
) -> pd.DataFrame:
    """Test accuracy (%) per task (rows) and trained variant (columns), mean ± std over seeds, beside the constant
    predictor's (the train split's majority class); then ASAP compiled from ``teacher`` at its operating point
    (the frontier's), compiled from the maps learned while it trained (a ``<teacher>_online`` run), and
    fine-tuned after compile."""
    table = runs.groupby(["task", "variant"])["test_acc"].agg(mean_std).unstack("variant")
    columns = [v for v in VARIANT_ORDER if v in table.columns] + [v for v in table.columns if v not in VARIANT_ORDER]
    table = table[columns]
    table.columns.name = None
    table.insert(0, "seeds", runs.groupby("task")["seed"].nunique())
    constant = runs.groupby("task")["constant_predictor_acc"].first()  # the same test split for every run
    table.insert(1, "constant predictor", (100 * constant).round(1))
    if frontier is not None:
        point = frontier[(frontier.teacher == teacher) & frontier.operating_point.astype(bool)]
        table["asap (compiled)"] = point.groupby("task")["accuracy"].agg(mean_std)
    online = runs[runs.variant == f"{teacher}_online"].dropna(subset=["online_asap_acc"])
    if len(online):
        table["asap (online map)"] = online.groupby("task")["online_asap_acc"].agg(mean_std)
    if finetuned is not None and len(finetuned):
        tuned = finetuned[finetuned.teacher == teacher]
        table["asap (fine-tuned)"] = tuned.groupby("task")["test_acc"].agg(mean_std)
    return table


def training_cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Median step time (ms), peak memory (MB) and training wall time (s) per task and variant."""
    columns = {"step_time_ms_median": "step ms", "step_peak_mem_mb": "step peak MB", "train_wall_s": "train s"}
    table = runs.groupby(["task", "variant"])[list(columns)].mean().round(1).rename(columns=columns)
    return table.reset_index().set_index("task")


def workflow_cost_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per workflow rule: jobs, total and longest wall time (min), largest peak memory (MB); a total row last."""
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"), total_min=("wall_s", "sum"), longest_min=("wall_s", "max"), peak_mb=("peak_rss_mb", "max")
    )
    table.loc["all"] = [len(jobs), jobs.wall_s.sum(), jobs.wall_s.max(), jobs.peak_rss_mb.max()]
    table[["total_min", "longest_min"]] /= 60
    return table.astype({"jobs": int}).round(1)


# A page of its own: Snakemake's HTML report shows an HTML result inline (in a frame), but offers Markdown and
# LaTeX only as downloads.
HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{caption}</title><style>
body {{ font: 13px sans-serif; margin: 1em; color: #111; background: #fff; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f2f2f2; }}
tbody th {{ text-align: left; }}
</style></head><body>
<p><b>{caption}</b></p>
{table}
</body></html>
"""


def write_table(table: pd.DataFrame, path_stem: Path, caption: str) -> list[Path]:
    """``<stem>.md`` (the README), ``<stem>.tex`` (papers) and ``<stem>.html`` (the workflow's HTML report)."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    markdown, latex, page = (path_stem.with_suffix(suffix) for suffix in (".md", ".tex", ".html"))
    markdown.write_text(f"**{caption}**\n\n{table.to_markdown()}\n")
    latex.write_text(table.to_latex(caption=caption, escape=True, float_format="%.3f"))
    page.write_text(HTML_PAGE.format(caption=html.escape(caption), table=table.to_html(border=0)), encoding="utf-8")
    return [markdown, latex, page]


def speed_table(inference: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """Per mode, shape (the reference, or a compiled model's own H, d, T, L), method and n: latency (ms), ratios to
    each teacher implementation (lean = the teacher as trained, flash, unrolled) and to softmax, peak memory (MB),
    the speed-up of compiled rows over eager, the threads the timing used; per length the log-sum-exp pass and
    the features over a full fused pass (r, phi), the pass-count limit, ASAP's share of it (its speed-up over
    the strongest teacher over the limit) and, on ``auto`` rows, the fastest implementation over the auto row."""
    columns = ["batch", "heads", "head_dim", "n_iters", "slices", "latency_ms"]
    columns += ["speedup_vs_teacher", "speedup_vs_flash", "speedup_vs_unrolled", "time_vs_softmax", "speedup_vs_eager"]
    columns += ["speedup_vs_strongest", "lse_pass_ratio", "features_ratio", "pass_limit", "of_pass_limit"]
    columns += ["auto_vs_fastest", "peak_mem_mb"]
    table = pd.concat([inference, training], ignore_index=True)
    for column in ("speedup_vs_strongest", "lse_pass_ratio", "features_ratio", "pass_limit", "auto_vs_fastest"):
        if column not in table:  # a table from before these columns
            table[column] = float("nan")
    asap = table.method.str.startswith("asap")
    table["of_pass_limit"] = (table.speedup_vs_strongest / table.pass_limit).where(asap)
    return table.set_index(["mode", "shape", "timing_threads", "method", "seq_len"])[columns].round(2)
