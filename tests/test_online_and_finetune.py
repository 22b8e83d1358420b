"""Maps learned while the teacher trains, and the fine-tune after compile (tiny end-to-end runs)."""

import json
from pathlib import Path

import pytest
import torch
from test_train import TINY_LISTOPS

import asap
from asap.__main__ import main
from asap.compiler import compile_online, load_compiled, online_report, save_compiled
from asap.nn import ASAP
from asap.train import Classifier, run_config, train

pytestmark = pytest.mark.slow

ONLINE = {"normaliser": "sinkhorn", "attention": {"n_iters": 2, "online_map": {"decay": 0.9}}}
TINY = {**TINY_LISTOPS, "variants": {**TINY_LISTOPS["variants"], "sinkhorn_online": ONLINE}}
TINY["trainer"] = {**TINY["trainer"], "max_epochs": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """The tiny Sinkhorn teacher trained twice, without and with online maps (same seed)."""
    root = tmp_path_factory.mktemp("online")
    records = {}
    for variant in ("sinkhorn", "sinkhorn_online"):
        config = run_config(TINY, variant, seed=3)
        records[variant] = train(config, root / variant, root / f"{variant}.json", data_dir)
    return records


def _model(record):
    return Classifier.load_from_checkpoint(record["checkpoints"]["best"], map_location="cpu").model.eval()


def test_online_maps_leave_the_teachers_training_unchanged(runs):
    plain, online = _model(runs["sinkhorn"]), _model(runs["sinkhorn_online"])
    online_state = online.state_dict()
    extra = set(online_state) - set(plain.state_dict())
    assert extra and all(".online_map." in key for key in extra)
    for key, value in plain.state_dict().items():
        assert torch.equal(online_state[key], value), f"{key} differs: the online map changed the teacher"
    assert runs["sinkhorn"]["metrics"]["test_acc"] == runs["sinkhorn_online"]["metrics"]["test_acc"]


def test_online_map_fits_the_duals_and_compiles_without_data(runs):
    teacher = _model(runs["sinkhorn_online"])
    report = online_report(teacher)
    print(report.to_string())
    assert len(report) == 2 and (report["r2"] > 0.9).all(), "held-out R^2 of the last validation epoch"
    assert (report["plan_error"] < 0.2).all()
    student = compile_online(teacher)
    layers = [m for m in student.modules() if isinstance(m, ASAP)]
    assert layers and all(bool(layer.calibrated) for layer in layers)
    # the map equals a ridge fit of the moments it accumulated, and the record compares it with the teacher
    assert torch.allclose(layers[0].r2, torch.tensor(report["r2"].to_numpy(), dtype=torch.float32))
    record = runs["sinkhorn_online"]["online_asap"]
    assert 0.5 <= record["agreement"] <= 1 and len(record["report"]) == 2
    with pytest.raises(ValueError, match="no Sinkhorn layer with an online dual map"):
        compile_online(_model(runs["sinkhorn"]))


def test_compile_online_from_the_command_line(runs, tmp_path, data_dir):
    out, report = tmp_path / "online.pt", tmp_path / "online.csv"
    checkpoint = runs["sinkhorn_online"]["checkpoints"]["best"]
    main(
        [
            "compile",
            "--online",
            "--checkpoint",
            checkpoint,
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--report",
            str(report),
        ]
    )
    loaded, expected = load_compiled(out), compile_online(_model(runs["sinkhorn_online"]))
    tokens = torch.randint(1, 10, (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), expected(tokens))
    assert len(report.read_text().splitlines()) == 1 + 2  # header, one layer x two heads


@pytest.mark.parametrize("params", ["maps", "all"])
def test_finetune_resumes_from_a_compiled_file_and_trains_what_it_says(runs, params, tmp_path, data_dir):
    from asap.train import load_teacher

    teacher = load_teacher(runs["sinkhorn"]["checkpoints"]["best"], data_dir)
    student = asap.compile(
        teacher.model, teacher.datamodule.train_dataloader(), slices=8, fit="ridge", num_batches=4, holdout_batches=1
    )
    compiled = save_compiled(
        student,
        tmp_path / "compiled.pt",
        {**teacher.model_args, "attention": "asap", "attention_options": {"num_slices": 8}},
        {"run": teacher.run},
    )
    out, result = tmp_path / "finetuned.pt", tmp_path / "finetune.json"
    main(
        [
            "finetune",
            "--compiled",
            str(compiled),
            "--out",
            str(out),
            "--result",
            str(result),
            "--run-dir",
            str(tmp_path / "run"),
            "--data-dir",
            str(data_dir),
            "--steps",
            "8",
            "--params",
            params,
            "--no-wandb",
        ]
    )
    record = json.loads(result.read_text())
    assert record["finetune"]["steps"] == 8 and 0 <= record["metrics"]["test_acc"] <= 1
    before, after = student.state_dict(), load_compiled(out).state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    maps = {key for key in before if ".dual_map." in key}
    assert maps <= changed, "the maps are trained in both modes"
    if params == "maps":
        assert changed == maps, f"only the maps may change, not {sorted(changed - maps)[:3]}"
    else:
        assert any("qkv" in key for key in changed), "a full fine-tune trains the attention projections too"


def test_weights_only_checkpoint_is_the_same_teacher_and_a_changed_one_is_refused(runs, tmp_path, data_dir, capsys):
    from asap.data.wheels import sha256sum
    from asap.results import weights_record_path
    from asap.train import load_teacher
    from asap.train.checkpoint import WEIGHTS_KEYS

    best, out = runs["sinkhorn"]["checkpoints"]["best"], tmp_path / "weights" / "seed3.ckpt"
    main(["weights", "--checkpoint", str(best), "--out", str(out)])
    record = json.loads(weights_record_path(out).read_text())
    assert record["sha256"] == sha256sum(out) and record["bytes"] == out.stat().st_size
    assert sorted(torch.load(out, weights_only=True)) == sorted(WEIGHTS_KEYS)
    assert out.stat().st_size < 0.6 * Path(best).stat().st_size, "optimiser state dropped"
    full, slim = load_teacher(best, data_dir), load_teacher(out, data_dir)
    tokens, _ = next(iter(full.datamodule.test_dataloader()))
    assert torch.equal(full.model(tokens), slim.model(tokens)) and slim.run == full.run
    out.write_bytes(out.read_bytes() + b"\0")  # one byte more: no longer the committed file
    with pytest.raises(ValueError, match="does not match its record"):
        load_teacher(out, data_dir)
    with pytest.raises(SystemExit):
        main(["compile", "--checkpoint", str(out), "--out", str(tmp_path / "x.pt")])
    assert "does not match its record" in capsys.readouterr().err.strip().splitlines()[-1]
