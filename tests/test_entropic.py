"""Sinkhorn and the entropic c-transform against POT's log-domain Sinkhorn (an independent reference)."""

import numpy as np
import ot
import pytest
import torch
from conftest import random_padding

from asap.ops import entropic_c_transform, sinkhorn, transport_plan

CONVERGED = 400


def pot_plan(scores: torch.Tensor) -> np.ndarray:
    """POT's entropic plan for cost -S, reg 1, uniform marginals."""
    n, m = scores.shape
    s = scores.double().numpy()
    return ot.bregman.sinkhorn_log(np.full(n, 1 / n), np.full(m, 1 / m), -s, reg=1.0, numItermax=100_000, stopThr=1e-14)


def test_converged_sinkhorn_matches_pot():
    scores = 2 * torch.randn(4, 7, 9, dtype=torch.float64)
    plan = transport_plan(scores, *sinkhorn(scores, CONVERGED))
    worst = max(np.abs(plan[b].numpy() - pot_plan(scores[b])).max() / pot_plan(scores[b]).max() for b in range(4))
    print(f"max relative deviation from POT (unmasked): {worst:.2e}")
    assert worst < 1e-8


def test_masked_sinkhorn_matches_pot_on_valid_block():
    n = 8
    valid = random_padding(5, n, min_valid=3)
    scores = 2 * torch.randn(5, n, n, dtype=torch.float64)
    mask = valid[:, :, None] & valid[:, None, :]
    plan = transport_plan(scores, *sinkhorn(scores, CONVERGED, mask), mask)
    worst = 0.0
    for b in range(5):
        v = valid[b]
        reference = pot_plan(scores[b][v][:, v])
        worst = max(worst, np.abs(plan[b][v][:, v].numpy() - reference).max() / reference.max())
        assert (plan[b][~mask[b]] == 0).all(), "masked pairs must get exactly zero mass"
    print(f"max relative deviation from POT (padding masks): {worst:.2e}")
    assert worst < 1e-8


def test_key_padding_mask_matches_pot_with_dropped_keys():
    scores = torch.randn(6, 9, dtype=torch.float64)
    keys = torch.tensor([True] * 6 + [False] * 3)
    plan = transport_plan(scores, *sinkhorn(scores, CONVERGED, keys), keys)
    reference = pot_plan(scores[:, keys])
    assert np.abs(plan[:, keys].numpy() - reference).max() < 1e-10
    assert (plan[:, ~keys] == 0).all()


def test_holes_in_the_mask_match_pot_with_infinite_cost():
    n = 6
    scores = torch.randn(n, n, dtype=torch.float64)
    mask = torch.rand(n, n) > 0.3
    mask |= torch.eye(n, dtype=torch.bool)  # keeps a feasible plan
    plan = transport_plan(scores, *sinkhorn(scores, 3000, mask), mask)
    cost = np.where(mask.numpy(), -scores.numpy(), 1e4)
    reference = ot.bregman.sinkhorn_log(
        np.full(n, 1 / n), np.full(n, 1 / n), cost, reg=1.0, numItermax=100_000, stopThr=1e-14
    )
    assert np.abs(plan.numpy() - reference).max() < 1e-7


def test_zero_iterations_is_softmax_over_n():
    scores = torch.randn(3, 2, 5, 6)
    f, g = sinkhorn(scores, 0)
    assert torch.allclose(transport_plan(scores, f, g), scores.softmax(-1) / 5, atol=1e-7)


@pytest.mark.parametrize("n_iters", [0, 1, 3, 10])
def test_rows_are_exact_after_any_number_of_iterations(n_iters):
    scores = 3 * torch.randn(2, 3, 6, 8, dtype=torch.float64)
    plan = transport_plan(scores, *sinkhorn(scores, n_iters))
    assert torch.allclose(plan.sum(-1), torch.full((2, 3, 6), 1 / 6, dtype=torch.float64), atol=1e-12)


def test_converged_marginals_with_padding():
    valid = random_padding(4, 10)
    mask = valid[:, :, None] & valid[:, None, :]
    scores = torch.randn(4, 10, 10, dtype=torch.float64)
    plan = transport_plan(scores, *sinkhorn(scores, CONVERGED, mask), mask)
    counts = valid.sum(-1, keepdim=True).double()
    expected = valid / counts
    assert torch.allclose(plan.sum(-1), expected, atol=1e-10)
    assert torch.allclose(plan.sum(-2), expected, atol=1e-10)


def test_gradcheck_unmasked_and_masked():
    scores = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: sinkhorn(s, 4), (scores,))
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :].expand(2, 4, 5).clone()
    mask[1, 3] = False  # a query with no valid key: a padded query
    assert torch.autograd.gradcheck(lambda s: sinkhorn(s, 4, mask), (scores,))


def test_fully_masked_rows_leave_gradients_finite():
    scores = torch.randn(3, 6, 6, requires_grad=True)
    valid = random_padding(3, 6)
    mask = valid[:, :, None] & valid[:, None, :]
    f, g = sinkhorn(scores, 5, mask)
    plan = transport_plan(scores, f, g, mask)
    (plan.square().sum() + f.sum() + g.sum()).backward()
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[~mask] == 0).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 2)
    with pytest.raises(ValueError, match="broadcast"):
        sinkhorn(torch.randn(2, 3, 4), 2, torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="key-padding"):
        sinkhorn(torch.randn(2, 3, 4), 2, torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        sinkhorn(torch.randn(3, 4), 2, torch.ones(3, 4))
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn(torch.randn(3, 4), -1)
    with pytest.raises(ValueError, match="no valid"):
        sinkhorn(torch.randn(3, 4), 1, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        entropic_c_transform(torch.randn(3, 4), torch.randn(4))


@pytest.mark.parametrize("two_sided", [True, False])
def test_c_transform_of_converged_dual_reproduces_teacher_plan(two_sided):
    valid = random_padding(3, 9)
    mask = valid[:, :, None] & valid[:, None, :]
    scores = 2 * torch.randn(3, 9, 9, dtype=torch.float64)
    f, g = sinkhorn(scores, CONVERGED, mask)
    teacher = transport_plan(scores, f, g, mask)
    f2, g2 = entropic_c_transform(scores, f, mask, two_sided)
    rebuilt = transport_plan(scores, f2, g2, mask)
    deviation = (rebuilt - teacher).abs().max().item() / teacher.max().item()
    print(f"c-transform of the converged dual, two_sided={two_sided}: relative deviation {deviation:.2e}")
    assert deviation <= 1e-5


@pytest.mark.parametrize("n_iters", [1, 2, 5])
def test_c_transform_of_the_last_query_dual_reproduces_a_truncated_run(n_iters):
    """A T-iteration teacher's last column step used f from T-1 iterations: feeding it back is exact."""
    scores = 3 * torch.randn(2, 4, 7, 7)
    keys = random_padding(2, 7)[:, None, :]
    f_prev, _ = sinkhorn(scores, n_iters - 1, keys)
    teacher = transport_plan(scores, *sinkhorn(scores, n_iters, keys), keys)
    rebuilt = transport_plan(scores, *entropic_c_transform(scores, f_prev, keys), keys)
    assert torch.allclose(rebuilt, teacher, atol=1e-7, rtol=0)
