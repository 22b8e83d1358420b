"""The headline is rebuilt from the committed files alone: constructed frontiers give the verdict the rule
says, inconsistent files are refused, and the committed headline is what the recompute command prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asap.report.headline import headline_markdown, headline_table, main
from asap.results import FrontierPredictions, predictions_path, timings_path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("teacher", "sinkhorn_0it", "sinkhorn_1it", "sinkhorn_2it", "asap", "asap_no_map")
N = 4000


def flip(correct: np.ndarray, worse: int, better: int, start: int) -> np.ndarray:
    """``correct`` made wrong on ``worse`` right examples and right on ``better`` wrong ones (from ``start``)."""
    out = correct.copy()
    right, wrong = np.flatnonzero(correct), np.flatnonzero(~correct)
    out[right[start : start + worse]] = False
    out[wrong[start : start + better]] = True
    return out


def write_teacher(results: Path, task: str, teacher: str, asap_ms: float, split: str = "a" * 64) -> None:
    """A frontier of a teacher that learned (90% against a 50% constant predictor) and needs its attention (the
    softmax swap is wrong on 200 more examples), with ASAP two flips from it, its no-map ablation 150 worse, one
    iteration 1 flip from it; the strongest teacher at 10 ms a call, ASAP at ``asap_ms``."""
    labels = np.zeros(N, dtype=np.int64)
    teacher_correct = np.arange(N) < 0.9 * N
    correct = {
        "teacher": teacher_correct,
        "sinkhorn_0it": flip(teacher_correct, 200, 0, 0),
        "sinkhorn_1it": flip(teacher_correct, 30, 25, 0),
        "sinkhorn_2it": flip(teacher_correct, 1, 0, 0),
        "asap": flip(teacher_correct, 2, 2, 10),
        "asap_no_map": flip(teacher_correct, 150, 0, 0),
    }
    predicted = np.stack([np.where(correct[v], 0, 1) for v in VARIANTS])
    table = pd.DataFrame(
        {
            "task": task,
            "teacher": teacher,
            "seed": 0,
            "variant": VARIANTS,
            "family": ["teacher", "truncated", "truncated", "truncated", "asap", "asap_no_map"],
            "iterations": [3, 0, 1, 2, None, None],
            "slices": [None, None, None, None, 16, 16],
            "directions": [None, None, None, None, "random", "random"],
            "fit": [None, None, None, None, "kl", "kl"],
            "operating_point": [False, False, False, False, True, False],
            "teacher_iterations": 3,
            "seq_len": 300,
            "constant_predictor_acc": 0.5,
            "accuracy": [correct[v].mean() for v in VARIANTS],
        }
    )
    path = results / "bench" / "frontier" / task / teacher / "seed0.csv"
    path.parent.mkdir(parents=True)
    table.to_csv(path, index=False)
    logits = np.stack([np.ones(N), np.zeros(N)], 1)
    FrontierPredictions(VARIANTS, np.arange(N), labels, predicted, logits, logits, split).save(predictions_path(path))
    rounds = 15
    jitter = 1 + 0.01 * np.sin(np.arange(rounds))
    cases = {
        "teacher@model": 30.0,
        "teacher@model#noise_floor": 30.0,
        "sinkhorn_lean@model": 30.0,
        "sinkhorn_flash@model": 10.0,
        "sinkhorn_lean@1024": 200.0,
        "sinkhorn_flash@1024": 100.0,
        "softmax@model": 0.5,
        "sinkhorn_1it@model": 12.0,
        "sinkhorn_2it@model": 20.0,
        "asap_key@model": asap_ms,
        "asap_key@1024": 10 * asap_ms,
        "teacher@batch": 40.0,
        "asap@batch": 20.0,
    }
    rounds_ms = {case: list(ms * jitter) for case, ms in cases.items()}
    keys = {"teacher": "teacher", "sinkhorn_0it": "softmax", "asap": "asap_key", "asap_no_map": "asap_key"}
    keys |= {"sinkhorn_1it": "sinkhorn_1it", "sinkhorn_2it": "sinkhorn_2it"}

    def comparison(length: str) -> dict:
        strongest = f"sinkhorn_flash@{length}"
        ratios = [a / b for a, b in zip(rounds_ms[strongest], rounds_ms[f"asap_key@{length}"], strict=True)]
        return {"strongest_teacher": "sinkhorn_flash", "fastest_asap": "asap_key", "speedup_rounds": ratios}

    timings = {
        "rounds_ms": rounds_ms,
        "threads": 1,
        "noise_floor_ratio": 1.0,
        "keys": keys,
        "comparisons": {"model": comparison("model"), "1024": comparison("1024")},
        "provenance": {"device": "cpu: x86_64, 1 threads", "versions": {"torch": "2.0"}},
    }
    timings_path(path).write_text(json.dumps(timings))


def test_constructed_teachers_get_the_rule_s_verdicts(tmp_path):
    write_teacher(tmp_path, "fast", "sinkhorn", asap_ms=1.0)  # 10x the strongest teacher
    write_teacher(tmp_path, "slow", "sinkhorn", asap_ms=5.0)  # 2x
    table = headline_table(tmp_path)
    fast, slow = table.loc[("fast", "sinkhorn")], table.loc[("slow", "sinkhorn")]
    assert fast.verdict == "reproduced" and slow.verdict == "not reproduced (speed)"
    assert fast["vs ±0.5"] == "equivalent" and fast["strongest teacher (n)"] == "sinkhorn_flash"
    assert fast["speed-up (n)"].startswith("10.00 [") and slow["speed-up (1024)"].startswith("2.00 [")
    assert fast["vs eager lean (1024)"] == "20.00" and fast["end-to-end ASAP / teacher"] == "2.00"
    # k = 1 is 5 examples apart (interval inside ±0.5 at N = 4,000); k = 0 is shown worse
    assert fast["cheapest equivalent truncation"] == "k=1" and fast["speed-up vs it (n=model)"].startswith("12.00")
    assert fast["k reaching ASAP's agreement"] == "k=2", "k = 2 agrees on all but 1 example, ASAP on all but 4"
    assert fast["timed on"] == "cpu: x86_64, 1 thread, torch 2.0"
    markdown = headline_markdown(tmp_path)
    assert markdown.startswith("**The paper's claim") and "one trained teacher per task (seed 0)" in markdown


def test_recompute_command_checks_a_committed_headline(tmp_path, capsys):
    write_teacher(tmp_path, "fast", "sinkhorn", asap_ms=1.0)
    committed = tmp_path / "headline.md"
    committed.write_text(headline_markdown(tmp_path))
    assert main([str(tmp_path), "--check", str(committed)]) == 0
    committed.write_text(committed.read_text().replace("reproduced", "not reproduced"))
    assert main([str(tmp_path), "--check", str(committed)]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_inconsistent_files_are_refused(tmp_path, capsys):
    write_teacher(tmp_path, "fast", "sinkhorn", asap_ms=1.0)
    write_teacher(tmp_path, "fast", "sinkhorn_t10", asap_ms=1.0, split="b" * 64)
    with pytest.raises(ValueError, match="another test split"):
        headline_table(tmp_path)
    table = tmp_path / "bench/frontier/fast/sinkhorn/seed0.csv"
    frame = pd.read_csv(table)
    frame.loc[frame.variant == "asap", "accuracy"] = 0.1
    frame.to_csv(table, index=False)
    assert main([str(tmp_path)]) == 2
    assert "do not give the table's accuracies" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing")]) == 2


def test_the_committed_headline_is_what_the_recompute_command_prints():
    """Anyone can rebuild the committed headline from the committed results, without torch."""
    code = (
        "import sys; from asap.report.headline import main; code = main(sys.argv[1:]);"
        "assert 'torch' not in sys.modules, 'the recompute imported torch'; sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "results/default", "--check", "paper_figures/default/headline.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
