"""The plan-fitted map (fit='kl') and the per-head choice of side (two_sided='auto')."""

import math

import pytest
import torch
from scipy.special import rel_entr

from asap import ops
from asap.compiler import OperatingPoint, calibration_report, compile_candidates
from asap.compiler.fit import (
    TeacherPlan,
    fit_dual_map,
    fit_dual_map_to_plans,
    plan_scores,
    row_divergence,
    teacher_plan,
)
from asap.compiler.operating_points import side_per_head
from asap.nn import LinearDualMap


def test_row_divergence_is_the_kl_of_normalised_rows_and_ignores_masked_pairs():
    p, q = torch.rand(3, 5).softmax(-1), torch.rand(3, 5).softmax(-1)
    expected = torch.tensor(rel_entr(p.numpy(), q.numpy()).sum(-1))
    torch.testing.assert_close(row_divergence(p.log(), q.log()), expected, rtol=1e-5, atol=1e-6)
    masked_p = torch.cat([p.log(), torch.full((3, 2), -torch.inf)], -1)
    masked_q = torch.cat([q.log(), torch.full((3, 2), -torch.inf)], -1)
    torch.testing.assert_close(row_divergence(masked_p, masked_q), expected, rtol=1e-5, atol=1e-6)


def _sharp_head_batches(count: int, seed: int, feature_set: str = "sliced"):
    """Sharp attention (scores of order 10) of one head, its features and the teacher's dual and plans."""
    generator = torch.Generator().manual_seed(seed)
    directions = ops.slice_directions(8, 8, seed=1)[None]  # (H=1, d, L)
    batches = []
    for _ in range(count):
        q, k = (3 * torch.randn(16, 1, 24, 8, generator=generator) for _ in range(2))
        features = ops.dual_features(q, k, directions, None, feature_set)
        dual = ops.teacher_query_dual(ops.attention_scores(q, k), 3)
        batches.append((features, dual, teacher_plan(q, k, None, 3)))
    return batches


def test_kl_fit_lowers_the_held_out_kl_of_a_sharp_head():
    fitting, holdout = _sharp_head_batches(6, seed=0), _sharp_head_batches(2, seed=1)
    features = torch.cat([f.flatten(0, 2)[None] for f, _, _ in fitting], dim=1)  # (H, T, 2L)
    targets = torch.cat([d.flatten()[None] for _, d, _ in fitting], dim=1)
    ridge = LinearDualMap(1, features.shape[-1])
    fit_dual_map(ridge, features, targets)
    held = [f for f, _, _ in holdout], [p for _, _, p in holdout]
    ridge_error, ridge_kl = plan_scores(ridge, *held, True)
    fitted = fit_dual_map_to_plans(ridge, [f for f, _, _ in fitting], [p for _, _, p in fitting], *held, True)
    error, kl = plan_scores(fitted, *held, True)
    print(
        f"held-out KL ridge {ridge_kl.item():.4f} -> {kl.item():.4f}; plan error {ridge_error.item():.3f} -> "
        f"{error.item():.3f}"
    )
    assert ridge_kl.item() > 0.05, "the head is sharp: ridge leaves a sizeable divergence"
    assert kl.item() < 0.9 * ridge_kl.item()
    assert not torch.equal(fitted.weight, ridge.weight) and torch.equal(ridge.weight, ridge.weight.clone())


def _ridge_plan_error(features: str) -> float:
    fitting, holdout = _sharp_head_batches(6, 0, features), _sharp_head_batches(2, 1, features)
    pooled = torch.cat([f.flatten(0, 2)[None] for f, _, _ in fitting], dim=1)  # (H, T, F)
    targets = torch.cat([d.flatten()[None] for _, d, _ in fitting], dim=1)
    ridge = LinearDualMap(1, pooled.shape[-1])
    fit_dual_map(ridge, pooled, targets)
    return plan_scores(ridge, [f for f, _, _ in holdout], [p for _, _, p in holdout], True)[0].item()


def test_row_lse_features_lower_the_held_out_plan_error_of_a_sharp_head():
    sliced, with_lse = _ridge_plan_error("sliced"), _ridge_plan_error("sliced+lse")
    print(f"held-out plan error of the ridge map: sliced {sliced:.3f}, sliced+lse {with_lse:.3f}")
    assert sliced > 0.2, "the head is sharp: the sliced features leave a sizeable plan error"
    assert with_lse < 0.75 * sliced


def test_auto_keeps_per_head_the_side_with_the_lower_held_out_error(teacher, mnist):
    points = [OperatingPoint(8, "random", side, fit) for fit in ("ridge", "kl") for side in (True, False, "auto")]
    compiled = compile_candidates(teacher, mnist.train_dataloader(), points, num_batches=3, holdout_batches=1)
    for fit in ("ridge", "kl"):
        reports = {
            side: calibration_report(compiled[OperatingPoint(8, "random", side, fit)]) for side in (True, False, "auto")
        }
        auto = reports["auto"]
        # each side's error is that of the model compiled with the side fixed (fitted for it)
        torch.testing.assert_close(
            torch.tensor(auto.two_sided_plan_error.values), torch.tensor(reports[True].plan_error.values)
        )
        torch.testing.assert_close(
            torch.tensor(auto.one_sided_plan_error.values), torch.tensor(reports[False].plan_error.values)
        )
        lower = auto.two_sided_plan_error <= auto.one_sided_plan_error
        assert (auto.two_sided == lower).all()
        torch.testing.assert_close(
            torch.tensor(auto.plan_error.values),
            torch.tensor(auto[["two_sided_plan_error", "one_sided_plan_error"]].min(axis=1).values),
        )
    kl, ridge = (calibration_report(compiled[OperatingPoint(8, "random", True, fit)]) for fit in ("kl", "ridge"))
    assert (kl.kl <= ridge.kl + 1e-7).all(), "early stopping keeps the held-out KL at or below ridge's"
    torch.testing.assert_close(torch.tensor(kl.ridge_kl.values), torch.tensor(ridge.kl.values))


def test_auto_keeps_the_side_that_wins_on_two_constructed_heads():
    """Two heads whose maps give exact duals, of two teachers. Head 0's teacher ends on a row step (ours, and
    Sinkformer's odd max_iter): the two-sided rebuild is exact there, the one-sided one is not. Head 1's teacher
    ends on a column step (Sinkformer with an even max_iter): its plan is exp(S + f + g'), g' the column
    c-transform of f, which the one-sided rebuild from f reproduces and the two-sided one cannot. Through the
    functions compile uses (plan_scores, then side_per_head), "auto" must keep each head's winner. (A teacher
    ending on rows, as every asap teacher does, favours two-sided: one-sided never won on the default tasks.)"""
    torch.manual_seed(0)
    q, k = (2 * torch.randn(4, 2, 24, 8) for _ in range(2))
    plan = teacher_plan(q, k, None, n_iters=3)
    f, _ = ops.sinkhorn(plan.scores, 3)  # (B, H, N), the last row step's
    column_final = -math.log(24) - torch.logsumexp(plan.scores + f.unsqueeze(-1), dim=-2)  # g' (B, H, N)
    log_column_final = plan.scores + f.unsqueeze(-1) + column_final.unsqueeze(-2) + math.log(24)  # log (n P)
    assert torch.allclose(log_column_final.exp().sum(-2), torch.ones(4, 2, 24), atol=1e-5), "columns exact"
    log_attention = torch.cat([plan.log_attention[:, :1], log_column_final[:, 1:]], dim=1)
    teachers = TeacherPlan(plan.scores, None, log_attention, plan.queries)
    duals = torch.stack([ops.teacher_query_dual(plan.scores, 3)[:, 0], f[:, 1]], dim=1)
    identity = LinearDualMap(num_heads=2, num_features=1)
    with torch.no_grad():
        identity.weight.fill_(1.0)  # the map returns its one feature: f = phi . 1 + 0
    scores = {side: plan_scores(identity, [duals.unsqueeze(-1)], [teachers], side) for side in (True, False)}
    two, one = scores[True][0], scores[False][0]
    assert two[0] < 1e-4 < 0.01 < one[0], "head 0: two-sided exact, one-sided not"
    assert one[1] < 1e-4 < 0.01 < two[1], "head 1: one-sided exact, two-sided not"
    assert side_per_head(scores, "auto").tolist() == [True, False]
    assert side_per_head(scores, True).tolist() == [True, True] and side_per_head(scores, False).tolist() == [False] * 2
    with pytest.raises(ValueError, match="two_sided must be"):
        side_per_head(scores, "both")


def test_auto_side_per_head_runs_both_paths_alike(teacher, mnist):
    point = OperatingPoint(8, "random", "auto", "ridge")
    student = compile_candidates(teacher, mnist.train_dataloader(), [point], num_batches=2, holdout_batches=1)[point]
    layer = next(m for m in student.modules() if hasattr(m, "normaliser") and m.normaliser.name == "asap")
    normaliser = layer.normaliser
    sides = torch.arange(layer.num_heads) % 2 == 0  # both sides in one layer
    normaliser.head_two_sided.copy_(sides)
    q, k, v = (torch.randn(2, layer.num_heads, 17, layer.head_dim) for _ in range(3))
    with torch.no_grad():
        dense = normaliser.weights(q, k) @ v
        fused = normaliser(q, k, v)
    assert (fused - dense).abs().max() < 1e-5 * dense.abs().max()
    with pytest.raises(ValueError, match="two_sided must be one of"):
        OperatingPoint(8, "random", "both").validate()
