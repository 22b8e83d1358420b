"""The headline: per trained teacher, the pre-registered verdict on the paper's claim (:mod:`asap.report.verdict`),
recomputed from the committed files alone.

For each frontier table ``results/<profile>/bench/frontier/<task>/<teacher>/seed<k>.csv`` it reads the table
(the operating point, the constant predictor, the model's ``n``), the per-example predictions beside it and the
timed rounds beside it (:mod:`asap.results`), and applies ``experiments/verdict.yaml``. numpy, pandas and PyYAML
only; anyone can run::

    python -m asap.report.headline results/default            # prints the headline table (Markdown)
    python -m asap.report.headline results/default --check paper_figures/default/headline.md

Beside the verdict, so that readers see every framing: the speed-up at ``n = 1024`` over the strongest teacher
there, the paper-style ratio (the eager lean teacher over eager ASAP at 1024), end-to-end throughput (the test
batch through the whole model), the cheapest truncation of the teacher that is *equivalent* to it by the same
rule (and ASAP's speed-up over it), and the fewest iterations whose agreement with the teacher reaches ASAP's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asap.report.verdict import TeacherEvidence, Verdict, VerdictRule, compare_to_margin, decide, points_text
from asap.results import (
    FrontierPredictions,
    bench_table_paths,
    per_round_ratio,
    predictions_path,
    read_timings,
    timings_path,
)
from asap.stats import median_interval, paired_difference_interval

SOFTMAX_SWAP, OPERATING_POINT, NO_MAP = "sinkhorn_0it", "asap", "asap_no_map"
EAGER_LEAN = "sinkhorn_lean"  # the paper-style baseline: the teacher as trained, eager


@dataclass(frozen=True)
class TeacherFiles:
    """One trained teacher's frontier: its table, per-example predictions and timed rounds."""

    table: pd.DataFrame
    predictions: FrontierPredictions
    timings: dict[str, Any]
    path: Path

    @classmethod
    def read(cls, table_path: str | Path) -> TeacherFiles:
        path = Path(table_path)
        table = pd.read_csv(path)
        predictions = FrontierPredictions.load(predictions_path(path))
        if tuple(table.variant) != predictions.variants:
            raise ValueError(f"{path}: the table's variants differ from its predictions'")
        accuracies = np.array([predictions.correct(variant).mean() for variant in predictions.variants])
        if not np.allclose(accuracies, table.accuracy, atol=1e-9):
            raise ValueError(f"{path}: the predictions do not give the table's accuracies")
        return cls(table, predictions, read_timings(timings_path(path)), path)

    def row(self, variant: str) -> pd.Series:
        return self.table.set_index("variant").loc[variant]


def teacher_evidence(files: TeacherFiles, rule: VerdictRule) -> TeacherEvidence:
    """What :func:`asap.report.verdict.decide` needs, from one teacher's files: correctness per example of the
    teacher, its softmax swap, ASAP at the operating point and without its map; the per-round speed-ups at the
    model's ``n``; whether the noise floor held."""
    operating = files.table[files.table.operating_point.astype(bool)]
    if list(operating.variant) != [OPERATING_POINT]:
        raise ValueError(f"{files.path}: need exactly one operating point named {OPERATING_POINT!r}")
    low, high = rule.noise_floor
    ratio = files.timings["noise_floor_ratio"]
    correct = files.predictions.correct
    return TeacherEvidence(
        task=str(files.table.task.iloc[0]),
        teacher_correct=correct("teacher"),
        softmax_swap_correct=correct(SOFTMAX_SWAP),
        asap_correct=correct(OPERATING_POINT),
        no_map_correct=correct(NO_MAP),
        constant_predictor_acc=float(files.table.constant_predictor_acc.iloc[0]),
        speedup_rounds=np.asarray(files.timings["comparisons"]["model"]["speedup_rounds"]),
        noise_floor_held=ratio is not None and low <= ratio <= high,
    )


def _speed(rounds: list[float], level: float) -> str:
    middle, low, high = median_interval(rounds, level)
    return f"{middle:.2f} [{low:.2f}, {high:.2f}]"


def fixed_length(timings: dict[str, Any]) -> str:
    """The longest fixed ``n`` the frontier timed (``"1024"``)."""
    lengths = [length for length in timings["comparisons"] if length.isdigit()]
    if not lengths:
        raise ValueError("the timings hold no fixed n")
    return max(lengths, key=int)


def truncation_columns(files: TeacherFiles, rule: VerdictRule, margin: float) -> dict[str, str]:
    """The cheapest truncation ``k < T`` equivalent to the teacher (the rule's interval inside ``±margin``) and
    ASAP's per-round speed-up over it at the model's ``n`` (both eager); the fewest ``k`` whose agreement with
    the teacher reaches ASAP's (``k = T``, the teacher, when none does)."""
    predicted, keys = files.predictions, files.timings["keys"]
    truncations = files.table[files.table.family == "truncated"].sort_values("iterations")
    teacher, teacher_classes = predicted.correct("teacher"), predicted.classes("teacher")
    asap_agreement = (predicted.classes(OPERATING_POINT) == teacher_classes).mean()
    equivalent, matched = None, f"k={int(files.table.teacher_iterations.iloc[0])} (teacher)"
    for variant, iterations in zip(truncations.variant, truncations.iterations, strict=True):
        interval = paired_difference_interval(predicted.correct(variant), teacher, rule.level)
        if equivalent is None and compare_to_margin(*interval, margin) == "equivalent":
            equivalent = (variant, int(iterations))
        if (predicted.classes(variant) == teacher_classes).mean() >= asap_agreement and matched.endswith("(teacher)"):
            matched = f"k={int(iterations)}"
    if equivalent is None:
        return {"cheapest equivalent truncation": "none", "speed-up vs it (n=model)": "",
                "k reaching ASAP's agreement": matched}  # fmt: skip
    variant, iterations = equivalent
    rounds = per_round_ratio(files.timings, f"{keys[variant]}@model", f"{keys[OPERATING_POINT]}@model")
    return {
        "cheapest equivalent truncation": f"k={iterations}",
        "speed-up vs it (n=model)": _speed(rounds, rule.speed_level),
        "k reaching ASAP's agreement": matched,
    }


def hardware_label(timings: dict[str, Any]) -> str:
    """``cpu: x86_64, 1 thread, torch 2.9.1+cpu``: where and how the rounds were timed."""
    provenance = timings.get("provenance", {})
    device = str(provenance.get("device", "unknown device")).split(",")[0]
    threads = timings["threads"]
    torch_version = provenance.get("versions", {}).get("torch", "unknown")
    return f"{device}, {threads} thread{'s' if threads != 1 else ''}, torch {torch_version}"


def headline_row(files: TeacherFiles, rule: VerdictRule) -> tuple[dict[str, Any], Verdict]:
    """One teacher's row of the headline table, and its verdict."""
    evidence = teacher_evidence(files, rule)
    verdict = decide(evidence, rule)
    numbers, timings, keys = verdict.numbers, files.timings, files.timings["keys"]
    fixed = fixed_length(timings)
    point = files.row(OPERATING_POINT)
    first = files.table.iloc[0]
    model_n, at_fixed = timings["comparisons"]["model"], timings["comparisons"][fixed]
    paper_style = per_round_ratio(timings, f"{EAGER_LEAN}@{fixed}", f"{keys[OPERATING_POINT]}@{fixed}")
    end_to_end = per_round_ratio(timings, "teacher@batch", "asap@batch")
    n_iters = int(first.teacher_iterations)
    row = {
        "task": first.task,
        "teacher": first.teacher,
        "T": f"{n_iters} ({2 * n_iters + 1} half-steps)",
        "n": int(first.seq_len),
        "test N": numbers["test_samples"],
        "teacher acc %": f"{100 * numbers['teacher_acc']:.2f}",
        "constant %": f"{100 * evidence.constant_predictor_acc:.2f}",
        "learned p": f"{numbers['learned_p']:.1e}",
        "softmax swap Δ pts": points_text(numbers["softmax_swap_interval"], unit=""),
        "ASAP point": f"L={int(point.slices)} {point.directions}, {point.fit}",
        "ASAP Δ pts": points_text(numbers["asap_interval"], unit=""),
        f"vs ±{100 * numbers['margin']:g}": numbers["asap_vs_margin"],
        f"vs ±{rule.reported_margin_points:g}": numbers["asap_vs_reported_margin"],
        "no-map Δ pts": points_text(numbers["no_map_interval"], unit=""),
        "strongest teacher (n)": model_n["strongest_teacher"],
        "speed-up (n)": _speed(model_n["speedup_rounds"], rule.speed_level),
        f"strongest teacher ({fixed})": at_fixed["strongest_teacher"],
        f"speed-up ({fixed})": _speed(at_fixed["speedup_rounds"], rule.speed_level),
        f"vs eager lean ({fixed})": f"{statistics.median(paper_style):.2f}",
        "end-to-end ASAP / teacher": f"{statistics.median(end_to_end):.2f}",
        **truncation_columns(files, rule, numbers["margin"]),
        "noise floor": f"{timings['noise_floor_ratio']:.3f}",
        "timed on": hardware_label(timings),
        "verdict": verdict.verdict,
        "reason": verdict.reason,
    }
    return row, verdict


def headline_table(results: str | Path, rule: VerdictRule | None = None) -> pd.DataFrame:
    """One row per trained teacher under ``results`` (see the module docstring), indexed by task and teacher."""
    rule = rule or VerdictRule.load()
    paths = bench_table_paths(results, "frontier")
    rows, splits = [], {}
    for path in paths:
        files = TeacherFiles.read(path)
        task = str(files.table.task.iloc[0])
        if splits.setdefault(task, files.predictions.split_sha256) != files.predictions.split_sha256:
            raise ValueError(f"{path}: scored on another test split (or order) than the task's other teachers")
        rows.append(headline_row(files, rule)[0])
    return pd.DataFrame(rows).set_index(["task", "teacher"])


def headline_caption(results: str | Path) -> str:
    """The table's caption: what it decides, on how many teachers per task, and where the paper's figure is
    from."""
    paths = bench_table_paths(results, "frontier")
    seeds = set(pd.concat([pd.read_csv(path, usecols=["seed"]) for path in paths]).seed)
    seed_text = f"one trained teacher per task (seed {seeds.pop()})" if len(seeds) == 1 else "every seed's teacher"
    return (
        "The paper's claim (ASAP 5.3x faster than its trained Sinkhorn teacher at matching accuracy), decided by "
        f"the pre-registered rule (experiments/verdict.yaml) for {seed_text}: 90% Tango intervals of the accuracy "
        "difference to the teacher, speed-ups per interleaved round with 95% order-statistic intervals, over "
        "the fastest teacher implementation by measurement; one attention layer at batch 1 on this machine (the "
        "paper's 5.3x is a GPU figure)"
    )


def headline_markdown(results: str | Path, rule: VerdictRule | None = None) -> str:
    """What the report writes as ``headline.md``."""
    return f"**{headline_caption(results)}**\n\n{headline_table(results, rule).to_markdown()}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asap.report.headline", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a profile's results directory, e.g. results/default")
    parser.add_argument("--check", type=Path, help="exit 1 unless this committed headline.md is what it rebuilds")
    args = parser.parse_args(argv)
    try:
        markdown = headline_markdown(args.results)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check is None:
        print(markdown, end="")
        return 0
    same = args.check.read_text() == markdown
    print(f"{args.check}: {'reproduced exactly' if same else 'DIFFERS from the rebuilt headline'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
