"""Train-then-compile on a tiny trained Sinkhorn teacher: calibration quality, invariants, save/load."""

import pytest
import torch
from conftest import N_ITERS, TEACHER

import asap
from asap import ops
from asap.bench import accuracy
from asap.compiler import (
    OperatingPoint,
    calibration_report,
    choose_operating_point,
    load_compiled,
    save_compiled,
    select_operating_point,
    slice_candidates,
    without_dual_map,
)
from asap.models import create_model
from asap.nn import ASAP, Attention
from asap.ops.masking import pair_mask

pytestmark = pytest.mark.slow


def test_calibration_fits_the_teacher_duals(teacher, mnist):
    student = asap.compile(teacher, mnist.train_dataloader(), slices=32, num_batches=6, holdout_batches=2)
    report = calibration_report(student)
    print(report.to_string())
    assert len(report) == 2 * 2 and set(report["slices"]) == {32}
    assert (report.groupby("layer")["r2"].mean() > 0.9).any(), "held-out R^2 > 0.9 on at least one layer"
    assert (report["r2"] > 0.5).all() and (report["plan_error"] < 0.2).all()
    teacher_accuracy = accuracy(teacher, mnist.val_dataloader())
    assert teacher_accuracy > 0.6, f"the teacher should have learnt something ({teacher_accuracy:.3f})"
    assert accuracy(student, mnist.val_dataloader()) > 0.95 * teacher_accuracy


def test_compile_changes_only_the_normalisers(teacher, mnist):
    student = asap.compile(teacher, mnist.train_dataloader(), slices=8, num_batches=2, holdout_batches=1)
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in teacher_state.items():
        assert torch.equal(student_state[key], value), key
    extra = set(student_state) - set(teacher_state)
    assert extra and all(".normaliser." in key for key in extra)
    assert all(isinstance(m.normaliser, ASAP) for m in student.modules() if isinstance(m, Attention))
    assert all(m.normaliser.name == "sinkhorn" for m in teacher.modules() if isinstance(m, Attention))
    images = next(iter(mnist.val_dataloader()))[0]
    assert torch.equal(student.patch_embed(images), teacher.patch_embed(images))


def test_asap_with_the_teacher_dual_reproduces_the_teacher_logits(teacher, mnist):
    student = asap.compile(teacher, mnist.train_dataloader(), slices=8, num_batches=2, holdout_batches=1)

    def exact_dual(q, k, mask=None):
        return ops.sinkhorn(ops.attention_scores(q, k), N_ITERS - 1, pair_mask(mask))[0]

    for module in student.modules():
        if isinstance(module, ASAP):
            module.dual = exact_dual
    images = next(iter(mnist.val_dataloader()))[0]
    with torch.no_grad():
        assert torch.allclose(student(images), teacher(images), atol=1e-5)


def test_the_map_matters(teacher, mnist):
    student = asap.compile(teacher, mnist.train_dataloader(), slices=16, num_batches=4, holdout_batches=1)
    ablated = without_dual_map(student)
    images, _ = next(iter(mnist.val_dataloader()))
    with torch.no_grad():
        reference = teacher(images)
        error_with_map = (student(images) - reference).norm()
        error_without_map = (ablated(images) - reference).norm()
    assert error_with_map < 0.5 * error_without_map


def test_save_load_round_trip_and_mismatch_errors(teacher, mnist, tmp_path):
    options = {"num_slices": 8, "dual_map": "mlp", "features": "sliced+lse"}
    student = asap.compile(
        teacher, mnist.train_dataloader(), slices=8, map="mlp", features="sliced+lse", num_batches=2, holdout_batches=1
    )
    assert set(calibration_report(student).features) == {"sliced+lse"}
    args = {**TEACHER, "attention": "asap", "attention_options": options}
    path = save_compiled(student, tmp_path / "compiled.pt", args, {"teacher": "test"})
    loaded = load_compiled(path)
    images = next(iter(mnist.val_dataloader()))[0]
    with torch.no_grad():
        assert torch.equal(loaded(images), student(images))
    assert calibration_report(loaded).equals(calibration_report(student))
    with pytest.raises(ValueError, match="does not match"):
        load_compiled(path, create_model(**{**args, "attention_options": {**options, "num_slices": 4}}))
    with pytest.raises(ValueError, match="does not match"):  # the sliced features alone: a narrower map
        load_compiled(path, create_model(**{**args, "attention_options": {**options, "features": "sliced"}}))
    with pytest.raises(ValueError, match="does not match"):
        load_compiled(path, create_model(**TEACHER))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an asap compiled model"):
        load_compiled(tmp_path / "other.pt")


def test_compile_errors(teacher, mnist):
    with pytest.raises(ValueError, match="no Sinkhorn attention"):
        softmax_model = create_model(**{**TEACHER, "attention": "softmax", "attention_options": {}})
        asap.compile(softmax_model, mnist.train_dataloader())
    with pytest.raises(ValueError, match="directions"):
        asap.compile(teacher, mnist.train_dataloader(), directions="learned")
    with pytest.raises(RuntimeError, match="not calibrated"):
        create_model(**{**TEACHER, "attention": "asap", "attention_options": {}})(torch.randn(1, 1, 28, 28))


def test_operating_point_rule_prefers_the_fewest_slices_within_tolerance():
    points = {OperatingPoint(4, "random"): 0.30, OperatingPoint(8, "pca"): 0.12, OperatingPoint(8, "random"): 0.11}
    points[OperatingPoint(16, "random")] = 0.10
    assert choose_operating_point(points) == OperatingPoint(8, "random"), "0.11 <= 0.10 * 1.1 + 0.005; fewest L"
    assert choose_operating_point(points, relative_tolerance=0, absolute_tolerance=0) == OperatingPoint(16, "random")
    assert choose_operating_point(points, relative_tolerance=2) == OperatingPoint(4, "random")
    with pytest.raises(ValueError, match="no candidate"):
        choose_operating_point({})
    assert slice_candidates(16) == [4, 8, 16, 32, 64] and slice_candidates(2) == [1, 2, 4, 8]


def test_select_operating_point_on_held_out_calibration_batches(teacher, mnist):
    student, point, candidates = select_operating_point(
        teacher, mnist.train_dataloader(), slices=(2, 8, 32), num_batches=3, holdout_batches=1
    )
    # the rule runs on the ridge fits; the chosen point is then KL-fitted (one more row, the chosen one)
    assert len(candidates) == 3 * 2 + 1 and candidates.chosen.sum() == 1
    chosen = candidates[candidates.chosen].iloc[0]
    assert (chosen.slices, chosen.directions, chosen.fit, point.fit) == (point.slices, point.directions, "kl", "kl")
    ridge = candidates[candidates.fit == "ridge"]
    qualified = ridge[ridge.heldout_plan_error <= ridge.heldout_plan_error.min() * 1.1 + 0.005]
    assert point.slices == qualified.slices.min()
    assert chosen.heldout_plan_error == pytest.approx(calibration_report(student)["plan_error"].mean())
    assert {m.normaliser.directions.shape[-1] for m in student.modules() if isinstance(m, Attention)} == {point.slices}
    # the same batches in the same order: compile with the chosen point reproduces the chosen model
    again = asap.compile(
        teacher,
        mnist.train_dataloader(),
        slices=point.slices,
        directions=point.directions,
        num_batches=3,
        holdout_batches=1,
    )
    assert calibration_report(again).equals(calibration_report(student))
    with pytest.raises(ValueError, match="slices must be"):
        asap.compile(teacher, mnist.train_dataloader(), slices="many")
