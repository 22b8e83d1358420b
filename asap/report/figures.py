"""Figures (PNG for the README, PDF for papers), each drawn from one results table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from asap.report.collect import latency_lengths  # noqa: E402

VARIANT_STYLE = {
    "teacher": dict(color="C0", marker="o"),
    "asap": dict(color="C3", marker="s"),
    "asap_one_sided": dict(color="C1", marker="^"),
    "asap_no_map": dict(color="C7", marker="x"),
    "softmax": dict(color="C2", marker="D"),
}


def save(figure: plt.Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    figure.tight_layout()
    for path in paths:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return paths


def _panels(count: int, width: float = 3.6, height: float = 3.0):
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return figure, axes[0]


def latency_vs_length(frozen: pd.DataFrame, stem: Path) -> list[Path]:
    """Per task, one attention layer's latency against sequence length for each variant (log-log)."""
    lengths = latency_lengths(frozen)
    tasks = list(dict.fromkeys(frozen.task))
    figure, axes = _panels(len(tasks))
    for axis, task in zip(axes, tasks, strict=True):
        for _, row in frozen[frozen.task == task].drop_duplicates("variant").iterrows():
            style = VARIANT_STYLE.get(row.variant, {})
            axis.plot(lengths, [row[f"latency_ms_n{n}"] for n in lengths], label=row.variant, **style)
        axis.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel="latency per layer (ms)", title=task)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    return save(figure, stem)


def sweeps(downstream: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy against the number of Sinkhorn iterations (frozen teacher) and against ASAP's slices."""
    figure, axes = _panels(2)
    for axis, knob, label in zip(
        axes,
        ["sinkhorn_iterations", "asap_slices"],
        ["Sinkhorn iterations at inference (0 = softmax)", "ASAP slices per head L"],
        strict=True,
    ):
        data = downstream[downstream.knob == knob]
        for task, group in data.groupby("task"):
            curve = group.groupby("value")["accuracy"].mean()
            axis.plot(curve.index, 100 * curve.values, marker="o", label=task)
        axis.set(xlabel=label, ylabel="test accuracy (%)")
        if knob == "asap_slices":
            axis.set_xscale("log", base=2)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    return save(figure, stem)


def dual_map_r2(reports: pd.DataFrame, stem: Path) -> list[Path]:
    """Held-out R^2 of the dual map per layer (mean over heads; bars span the heads' min to max)."""
    figure, axes = _panels(1, width=5.0)
    axis = axes[0]
    for offset, (task, group) in enumerate(reports.groupby("task")):
        layers = list(dict.fromkeys(group.layer))
        stats = group.groupby("layer")["r2"].agg(["mean", "min", "max"]).loc[layers]
        x = [index + 0.1 * offset for index in range(len(layers))]
        axis.errorbar(
            x,
            stats["mean"],
            yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
            marker="o",
            capsize=3,
            label=task,
            linestyle="none",
        )
    axis.set(xlabel="attention layer", ylabel="held-out $R^2$ of $\\hat f$", ylim=(None, 1.0))
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    return save(figure, stem)


def training_cost(runs: pd.DataFrame, stem: Path) -> list[Path]:
    """Median training-step time and peak memory per task and variant."""
    figure, axes = _panels(2, width=4.5)
    for axis, column, label in zip(
        axes, ["step_time_ms_median", "peak_mem_mb"], ["training step time (ms)", "peak memory (MB)"], strict=True
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
    """One attention layer: inference latency and peak memory against n, and the training step per method."""
    figure, axes = _panels(3, width=3.8)
    for method, group in inference.groupby("method", sort=False):
        axes[0].plot(group.seq_len, group.latency_ms, marker="o", label=method)
        axes[1].plot(group.seq_len, group.peak_mem_mb.clip(lower=1e-1), marker="o", label=method)
    for axis, label in zip(axes[:2], ["inference latency (ms)", "inference peak memory (MB)"], strict=True):
        axis.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel=label)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    longest = training[training.seq_len == training.seq_len.max()]
    axes[2].bar(longest.method, longest.latency_ms)
    axes[2].set(ylabel=f"training step (ms), n={int(longest.seq_len.max())}", yscale="log")
    axes[2].tick_params(axis="x", rotation=30)
    return save(figure, stem)
