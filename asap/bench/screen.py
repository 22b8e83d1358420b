"""Screening candidate tasks on the validation split, before any choice is committed and any ASAP result seen.

A candidate is a task config (``experiments/screen/<candidate>.yaml``: one recipe, a ``softmax`` and a
``sinkhorn`` variant, and the ``reference`` it is held to). Both variants are trained without ever evaluating the
test split; the Sinkhorn teacher is then scored on validation against the three conditions a default task's
teacher must meet (issue: "teachers worth replacing"), with the statistics of the verdict rule
(:mod:`asap.report.verdict`):

- *learned*: it beats the constant predictor of validation, exact binomial ``p < learned_alpha``, lies within
  ``REFERENCE_GAP_POINTS`` of the cited from-scratch figure, and at most ``SOFTMAX_GAP_POINTS`` below the softmax
  model of the same recipe;
- *attention needed*: swapping its Sinkhorn normaliser for a row softmax (weights kept) is shown worse than the
  task's margin: the 90% Tango interval of the paired accuracy difference lies entirely below ``-margin``.

The lengths are the test split's (data, not results): the model's own n (the median padded width of its
batches, or the patch count) and the median number of real tokens per example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from asap.bench.agreement import predictions
from asap.bench.run import model_sequence_length
from asap.data.base import sequence_lengths
from asap.nn.attention import with_normaliser
from asap.provenance import provenance, write_json_atomic, write_table
from asap.report.verdict import VerdictRule, compare_to_margin
from asap.results import write_atomic
from asap.stats import binomial_sf, paired_difference_interval
from asap.train.checkpoint import load_teacher
from asap.train.config import run_config
from asap.train.run import train

SCREEN_VARIANTS = ("softmax", "sinkhorn")
REFERENCE_GAP_POINTS = 10.0  # the teacher may trail the cited from-scratch figure by at most this
SOFTMAX_GAP_POINTS = 1.0  # ... and the softmax model of the same recipe by at most this


def screen_checks(row: dict[str, Any], margin_points: float, learned_alpha: float) -> dict[str, bool]:
    """Which conditions a screened teacher meets (accuracies and interval ends in points), and ``decidable``
    when it meets all of them.

    >>> row = dict(teacher_acc=90.0, softmax_acc=90.5, reference_acc=95.0, learned_p=1e-9, swap_high=-2.0)
    >>> screen_checks(row, margin_points=0.5, learned_alpha=0.001)["decidable"]
    True
    """
    checks = {
        "beats_constant": row["learned_p"] < learned_alpha,
        "near_reference": row["teacher_acc"] >= row["reference_acc"] - REFERENCE_GAP_POINTS,
        "near_softmax": row["teacher_acc"] >= row["softmax_acc"] - SOFTMAX_GAP_POINTS,
        "swap_shown_worse": compare_to_margin(-np.inf, row["swap_high"] / 100, margin_points / 100) == "shown worse",
    }
    return {**checks, "decidable": all(checks.values())}


def checks_under(row: dict[str, Any], rule: VerdictRule) -> dict[str, Any]:
    """The row's task margin under ``rule`` (points) and :func:`screen_checks` with it."""
    margin_points = 100 * rule.margin(row["task"])
    return {"margin_points": margin_points, **screen_checks(row, margin_points, rule.learned_alpha)}


def load_candidate(path: str | Path) -> dict[str, Any]:
    """The candidate's task config; it must name its reference and configure the screened variants."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict) or "reference" not in config:
        raise ValueError(f"{path}: a screen candidate is a task config with a 'reference' section")
    missing = [variant for variant in SCREEN_VARIANTS if variant not in config.get("variants", {})]
    if missing:
        raise ValueError(f"{path}: a screen candidate needs the variants {list(SCREEN_VARIANTS)}; missing {missing}")
    return config


def screen_candidate(
    config_path: str | Path,
    result_path: str | Path,
    runs_dir: str | Path = "runs/screen",
    data_dir: str | Path = "data",
    rule: VerdictRule | None = None,
) -> dict[str, Any]:
    """Train the candidate's two variants (validation only), score the teacher, write one JSON row."""
    rule = rule or VerdictRule.load()
    candidate, task_config = Path(config_path).stem, load_candidate(config_path)
    result_path = Path(result_path)
    records = {}
    for variant in SCREEN_VARIANTS:
        config = run_config(task_config, variant, seed=0, profile="screen")
        record_path = result_path.parent / candidate / f"{variant}.json"
        records[variant] = train(
            config, Path(runs_dir) / candidate / variant, record_path, data_dir, evaluate_test=False
        )
    teacher = load_teacher(records["sinkhorn"]["checkpoints"]["best"], data_dir)
    datamodule = teacher.datamodule
    logits, labels = predictions(teacher.model, datamodule.val_dataloader())
    swapped, _ = predictions(with_normaliser(teacher.model, "softmax"), datamodule.val_dataloader())
    teacher_correct, swap_correct = (logits.argmax(-1) == labels).numpy(), (swapped.argmax(-1) == labels).numpy()
    swap_low, swap_high = paired_difference_interval(swap_correct, teacher_correct, rule.level)
    constant = records["sinkhorn"]["metrics"]["constant_predictor_acc"]
    test = datamodule.datasets["test"]
    text = datamodule.modality == "text"
    row = {
        "candidate": candidate,
        "task": task_config["task"],
        "model_n": model_sequence_length(teacher.model, datamodule),
        "real_tokens": float(np.median(sequence_lengths(test))) if text else None,
        "teacher_acc": 100 * float(teacher_correct.mean()),
        "softmax_acc": 100 * records["softmax"]["metrics"]["best_val_acc"],
        "constant_acc": 100 * constant,
        "learned_p": binomial_sf(int(teacher_correct.sum()), len(teacher_correct), constant),
        "reference_acc": float(task_config["reference"]["accuracy"]),
        "reference": f"{task_config['reference']['model']}, {task_config['reference']['citation']}",
        "swap_loss": 100 * float(swap_correct.mean() - teacher_correct.mean()),
        "swap_low": 100 * swap_low,
        "swap_high": 100 * swap_high,
        "val_n": len(teacher_correct),
        "test_n": len(test),
        "train_s_softmax": records["softmax"]["cost"]["train_wall_s"],
        "train_s_sinkhorn": records["sinkhorn"]["cost"]["train_wall_s"],
    }
    row.update(checks_under(row, rule))
    write_json_atomic(result_path, {"row": row, "config": task_config, "provenance": provenance()})
    return row


def screen_table(rows: list[str | Path], table_path: str | Path, rule: VerdictRule | None = None) -> pd.DataFrame:
    """The screen table of every candidate's JSON row, its checks recomputed under the committed ``rule`` (a task
    margin registered after a row was written applies), written as CSV (with provenance) and Markdown beside it."""
    rule = rule or VerdictRule.load()
    records = [json.loads(Path(path).read_text())["row"] for path in rows]
    table = pd.DataFrame([{**row, **checks_under(row, rule)} for row in records])
    write_table(table, table_path, {"candidates": [str(path) for path in rows]})
    markdown = table.to_markdown(index=False, floatfmt=".4g") + "\n"
    write_atomic(Path(table_path).with_suffix(".md"), lambda tmp: Path(tmp).write_text(markdown))
    return table
