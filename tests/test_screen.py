"""The screen of candidate tasks: its decision rule, and a tiny end-to-end screen that never touches test."""

import json

import pytest

from asap.bench.screen import REFERENCE_GAP_POINTS, SOFTMAX_GAP_POINTS, screen_candidate, screen_checks, screen_table
from asap.report.verdict import VerdictRule

PASSING = dict(teacher_acc=90.0, softmax_acc=90.5, reference_acc=95.0, learned_p=1e-9, swap_high=-2.0)


@pytest.mark.parametrize(
    "change, failed",
    [
        ({}, None),
        ({"learned_p": 0.001}, "beats_constant"),
        ({"reference_acc": 90.0 + REFERENCE_GAP_POINTS + 0.01}, "near_reference"),
        ({"softmax_acc": 90.0 + SOFTMAX_GAP_POINTS + 0.01}, "near_softmax"),
        ({"swap_high": -0.5}, "swap_shown_worse"),  # touching the margin is not below it
        ({"swap_high": 0.3}, "swap_shown_worse"),
    ],
)
def test_screen_checks_fail_exactly_the_broken_condition(change, failed):
    checks = screen_checks({**PASSING, **change}, margin_points=0.5, learned_alpha=0.001)
    assert checks["decidable"] == (failed is None)
    assert [name for name, ok in checks.items() if not ok and name != "decidable"] == ([failed] if failed else [])


def test_screen_checks_use_the_task_margin():
    row = {**PASSING, "swap_high": -0.7}
    assert screen_checks(row, margin_points=0.5, learned_alpha=0.001)["swap_shown_worse"]
    assert not screen_checks(row, margin_points=1.0, learned_alpha=0.001)["swap_shown_worse"]


@pytest.mark.slow
def test_a_tiny_screen_trains_both_variants_and_never_evaluates_test(tmp_path, monkeypatch):
    import yaml

    from asap.train import run as run_module

    config = {
        "task": "listops",
        "data": {"batch_size": 8, "train_size": 48, "val_size": 24, "test_size": 16, "min_len": 16, "max_len": 32},
        "model": {"name": "text_encoder", "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0},
        "variants": {"softmax": {}, "sinkhorn": {"n_iters": 2}},
        "optim": {"lr": 3.0e-3, "weight_decay": 0.0},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "logging": {"wandb": False},
        "reference": {"accuracy": 36.4, "model": "Transformer", "citation": "Tay et al. (2021), LRA, Table 1"},
    }
    path = tmp_path / "tiny_listops.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(
        run_module.L.Trainer, "test", lambda *args, **kwargs: pytest.fail("screening must not evaluate test")
    )
    row = screen_candidate(path, tmp_path / "screen/tiny_listops.json", tmp_path / "runs", tmp_path / "data")
    assert (row["candidate"], row["task"], row["val_n"], row["test_n"]) == ("tiny_listops", "listops", 24, 16)
    assert row["swap_low"] <= row["swap_loss"] <= row["swap_high"]
    rule = VerdictRule.load()
    assert row["decidable"] == screen_checks(row, rule.margin_points, rule.learned_alpha)["decidable"]
    for variant in ("softmax", "sinkhorn"):
        record = json.loads((tmp_path / f"screen/tiny_listops/{variant}.json").read_text())
        assert "test_acc" not in record["metrics"] and record["config"]["reference"]["accuracy"] == 36.4
    table = screen_table([tmp_path / "screen/tiny_listops.json"], tmp_path / "screen/screen.csv")
    assert table["candidate"].tolist() == ["tiny_listops"]
    assert "tiny_listops" in (tmp_path / "screen/screen.md").read_text()
    assert (tmp_path / "screen/screen.provenance.json").exists()


def test_the_table_applies_the_committed_task_margins(tmp_path):
    rows = []
    for task in ("reuters_r8", "mnist"):  # R8 has a registered 1-point margin, MNIST the default 0.5
        row = {**PASSING, "candidate": task, "task": task, "swap_high": -0.7, "swap_shown_worse": True}
        rows.append(tmp_path / f"{task}.json")
        rows[-1].write_text(json.dumps({"row": row}))
    table = screen_table(rows, tmp_path / "screen.csv", VerdictRule.load()).set_index("task")
    assert table.loc["reuters_r8", "margin_points"] == 1.0 and not table.loc["reuters_r8", "swap_shown_worse"]
    assert table.loc["mnist", "margin_points"] == 0.5 and table.loc["mnist", "decidable"]
