"""Figures (PNG for the README, PDF for papers), each drawn from one results table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import pandas as pd  # noqa: E402

from asap.results import SPEED_AUTO_ROWS, SPEED_PIECES  # noqa: E402


def save(figure: plt.Figure, stem: Path, bottom: float = 0.0) -> list[Path]:
    """PNG and PDF of ``figure``; ``bottom`` is the fraction kept free below the panels (a figure legend)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    figure.tight_layout(rect=(0, bottom, 1, 1))
    for path in paths:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return paths


def _panels(count: int, width: float = 3.6, height: float = 3.0):
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return figure, axes[0]


FAMILY_STYLE = {
    ("truncated", None): dict(color="C0", marker="o", label="truncated Sinkhorn (k = 0 .. T)"),
    ("asap", "random"): dict(color="C3", marker="s", label="ASAP, random directions"),
    ("asap", "pca"): dict(color="C1", marker="^", label="ASAP, PCA directions"),
}


def sliced_features(rows: pd.DataFrame) -> pd.DataFrame:
    """The ASAP rows with the paper's sliced features (all rows of tables written before the feature sets)."""
    return rows[rows.features == "sliced"] if "features" in rows else rows


def _frontier_panel(axis, rows: pd.DataFrame, latency: str) -> None:
    truncated = rows[rows.family.isin(["truncated", "teacher"])].sort_values("iterations")
    style = FAMILY_STYLE[("truncated", None)]
    axis.plot(truncated[latency], 100 * truncated.agreement, **style)
    for k, x, y in zip(truncated.iterations, truncated[latency], 100 * truncated.agreement, strict=True):
        axis.annotate(f"{int(k)}", (x, y), textcoords="offset points", xytext=(3, -9), fontsize=6, color="C0")
    for kind in ("random", "pca"):
        for two_sided, linestyle in ((True, "-"), (False, ":")):
            line = rows[(rows.family == "asap") & (rows.directions == kind) & rows.two_sided.eq(two_sided)]
            line = sliced_features(line[line.fit == "ridge"])  # the sweep over L (the rest: operating point only)
            style = dict(FAMILY_STYLE[("asap", kind)])
            if not two_sided:
                style["label"] = style["label"] + ", one-sided"
                style["alpha"] = 0.6
            axis.plot(
                line.sort_values("slices")[latency],
                100 * line.sort_values("slices").agreement,
                linestyle=linestyle,
                **style,
            )
    teacher = rows[rows.family == "teacher"]
    axis.scatter(teacher[latency], 100 * teacher.agreement, marker="*", s=160, color="k", zorder=5, label="teacher")
    point = rows[rows.operating_point.astype(bool)]
    axis.scatter(
        point[latency],
        100 * point.agreement,
        s=180,
        facecolors="none",
        edgecolors="k",
        linewidths=1.5,
        zorder=6,
        label="ASAP operating point",
    )
    no_map = rows[rows.family == "asap_no_map"]
    axis.scatter(no_map[latency], 100 * no_map.agreement, marker="x", color="C7", label="ASAP without map")
    if "features" in rows:  # at the operating point's L and side, ridge and KL maps
        lse = rows[(rows.family == "asap") & (rows.features == "sliced+lse")]
        axis.scatter(lse[latency], 100 * lse.agreement, marker="D", color="C2", label="ASAP + row LSE features")


def frontier(frontier_table: pd.DataFrame, stem: Path, latency_n: str) -> list[Path]:
    """Per teacher: agreement with the teacher's predictions against per-layer latency at ``n = latency_n``,
    one line per family (truncated Sinkhorn by iterations, ASAP by slices per direction kind and side)."""
    keys = list(dict.fromkeys(zip(frontier_table.task, frontier_table.teacher, strict=True)))
    figure, axes = _panels(len(keys), width=4.2, height=3.6)
    latency = f"latency_ms_n{latency_n}"
    for axis, (task, teacher) in zip(axes, keys, strict=True):
        rows = frontier_table[(frontier_table.task == task) & (frontier_table.teacher == teacher)]
        _frontier_panel(axis, rows, latency)
        iterations = int(rows.teacher_iterations.iloc[0])
        axis.set(
            xscale="log",
            xlabel=f"per-layer latency at n={latency_n} (ms, 1 thread)",
            ylabel="agreement with teacher (%)",
            title=f"{task}, teacher T={iterations}",
        )
        # labels at 1, 2, 5 x 10^k in plain numbers: matplotlib's default labels minor ticks too when the range
        # spans less than a decade, and they overlap
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="x-small", loc="lower right")
    return save(figure, stem)


def sweeps(frontier_table: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy of each frozen teacher against Sinkhorn iterations at inference (0 = softmax, T = the teacher),
    and of ASAP (two-sided, random directions, ridge maps) against its slices per head."""
    figure, axes = _panels(2)
    for (task, teacher), rows in frontier_table.groupby(["task", "teacher"], sort=False):
        label = f"{task} ({teacher})"
        truncated = rows[rows.family.isin(["truncated", "teacher"])].sort_values("iterations")
        axes[0].plot(truncated.iterations, 100 * truncated.accuracy, marker="o", label=label)
        asap = rows[(rows.family == "asap") & (rows.directions == "random") & rows.two_sided.eq(True)]
        asap = sliced_features(asap[asap.fit == "ridge"]).sort_values("slices")
        axes[1].plot(asap.slices, 100 * asap.accuracy, marker="s", label=label)
    axes[0].set(xlabel="Sinkhorn iterations at inference (0 = softmax)", ylabel="test accuracy (%)")
    axes[1].set(xlabel="ASAP slices per head L", ylabel="test accuracy (%)", xscale="log")
    for axis in axes:
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize="x-small")
    return save(figure, stem)


def dual_map_r2(reports: pd.DataFrame, stem: Path) -> list[Path]:
    """Per teacher and layer (means over heads; bars span the heads' min to max): the held-out R^2 of the ridge
    map's dual, and the held-out plan error of the ridge map (open) and of the deployed map (filled: KL-fitted
    when compiled with ``fit="kl"``)."""
    figure, axes = _panels(2, width=5.0)
    for offset, ((task, teacher), group) in enumerate(reports.groupby(["task", "variant"], sort=False)):
        layers = list(dict.fromkeys(group.layer))
        x = [index + 0.08 * offset for index in range(len(layers))]
        panels = [(axes[0], "ridge_r2", "o", "full"), (axes[1], "ridge_plan_error", "o", "none")]
        panels.append((axes[1], "plan_error", "o", "full"))
        for axis, column, marker, fill in panels:
            stats = group.groupby("layer")[column].agg(["mean", "min", "max"]).loc[layers]
            axis.errorbar(
                x,
                stats["mean"],
                yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                marker=marker,
                fillstyle=fill,
                capsize=3,
                color=f"C{offset}",
                label=f"{task} ({teacher})" if fill == "full" else None,
                linestyle="none",
            )
    layers = list(dict.fromkeys(reports.layer))
    axes[0].set(ylabel="held-out $R^2$ of $\\hat f$ (ridge map)", ylim=(None, 1.0))
    axes[1].set(ylabel="held-out plan error", title="open: ridge map; filled: deployed map", ylim=(0, None))
    for axis in axes:
        axis.set_xticks(range(len(layers)), layers)
        axis.set(xlabel="attention layer")
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize="x-small")
    return save(figure, stem)


def training_cost(runs: pd.DataFrame, stem: Path) -> list[Path]:
    """Median training-step time and peak memory per task and variant."""
    figure, axes = _panels(2, width=4.5)
    for axis, column, label in zip(
        axes,
        ["step_time_ms_median", "step_peak_mem_mb"],
        ["training step time (ms)", "training step peak memory (MB)"],
        strict=True,
    ):
        table = runs.groupby(["task", "variant"])[column].mean().unstack("variant")
        table.plot.bar(ax=axis, rot=20)
        axis.set(ylabel=label, xlabel="")
        axis.grid(True, axis="y", alpha=0.3)
    return save(figure, stem)


def calibration_curve(downstream: pd.DataFrame, stem: Path) -> list[Path]:
    """Fraction of the teacher's accuracy ASAP recovers against the calibration samples used."""
    figure, axes = _panels(1, width=4.5)
    axis = axes[0]
    for task, group in downstream[downstream.experiment == "calibration"].groupby("task"):
        curve = group.groupby("calib_samples")["recovered"].mean()
        axis.plot(curve.index, 100 * curve.values, marker="o", label=task)
    axis.axhline(100, color="k", linewidth=0.8, linestyle="--")
    axis.set(xscale="log", xlabel="calibration samples", ylabel="teacher accuracy recovered (%)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    return save(figure, stem)


def speed(inference: pd.DataFrame, training: pd.DataFrame, stem: Path) -> list[Path]:
    """One attention layer: inference latency and peak memory against n; the training step's time and peak
    memory per method at the longest n timed for every method."""
    figure, axes = _panels(4, width=3.8)
    single = inference.timing_threads.min()  # the single-threaded sweep, which also measured memory
    inference = inference[(inference["shape"] == "reference") & (inference.timing_threads == single)]
    inference = inference[~inference.method.str.endswith("_compiled")]  # one length only: in the table
    inference = inference[~inference.method.isin((*SPEED_PIECES, *SPEED_AUTO_ROWS))]  # pieces and rules: in the table
    training = training[(training["shape"] == "reference") & (training.timing_threads == single)]
    for method, group in inference.groupby("method", sort=False):
        axes[0].plot(group.seq_len, group.latency_ms, marker="o", label=method)
        axes[1].plot(group.seq_len, group.peak_mem_mb.clip(lower=1e-1), marker="o", label=method)
    lengths = sorted(inference.seq_len.unique())
    for axis, label in zip(axes[:2], ["inference latency (ms)", "inference peak memory (MB)"], strict=True):
        axis.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel=label)
        axis.set_xticks(lengths, [str(n) for n in lengths])  # the lengths timed, not log-scale minor labels
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(True, which="both", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=8, fontsize="small")
    longest = training[training.seq_len == training.seq_len.max()]
    n = int(longest.seq_len.max())
    panels = zip(axes[2:], ["latency_ms", "peak_mem_mb"], ["step (ms)", "step memory (MB)"], strict=True)
    for axis, column, label in panels:
        axis.bar(longest.method, longest[column])
        axis.set(ylabel=f"training {label}", title=f"training step, n={n}", yscale="log")
        axis.tick_params(axis="x", rotation=30)
    return save(figure, stem, bottom=0.1)
