"""Expected sliced transport (ESPFormer) plans."""

import numpy as np
import ot
import pytest
import torch

from asap.ops import project, slice_directions, sliced_transport_plan, soft_sort


def test_slice_directions():
    axes = slice_directions(6)
    assert torch.equal(axes, torch.eye(6))
    directions = slice_directions(6, 14, seed=3)
    assert directions.shape == (6, 14)
    block = directions[:, :6]
    assert torch.allclose(block.T @ block, torch.eye(6), atol=1e-6), "each block of d directions is orthonormal"
    assert torch.equal(directions, slice_directions(6, 14, seed=3))
    assert not torch.equal(directions, slice_directions(6, 14, seed=4))
    q, k = torch.randn(5, 6), torch.randn(7, 6)
    d = slice_directions(6, 6, seed=1)
    assert torch.allclose(project(q, d) @ project(k, d).T, q @ k.T / 6**0.5, atol=1e-5)


def test_one_slice_at_small_temperature_is_the_exact_1d_plan():
    n, d = 7, 4
    q, k = torch.randn(2, n, d, dtype=torch.float64), torch.randn(2, n, d, dtype=torch.float64)
    direction = slice_directions(d, 1, seed=0).double()
    plan = sliced_transport_plan(q, k, direction, sort_temperature=1e-6)
    x, y = project(q, direction)[..., 0], project(k, direction)[..., 0]
    for b in range(2):
        exact = n * ot.emd(np.full(n, 1 / n), np.full(n, 1 / n), -np.outer(x[b].numpy(), y[b].numpy()))
        assert np.abs(plan[b].numpy() - exact).max() < 1e-6


def test_rows_and_columns_sum_to_one_at_small_temperature():
    q, k = torch.randn(3, 2, 10, 8, dtype=torch.float64), torch.randn(3, 2, 10, 8, dtype=torch.float64)
    plan = sliced_transport_plan(q, k, slice_directions(8).double(), sort_temperature=1e-6)
    ones = torch.ones(3, 2, 10, dtype=torch.float64)
    assert torch.allclose(plan.sum(-1), ones, atol=1e-6)
    assert torch.allclose(plan.sum(-2), ones, atol=1e-6)


def test_soft_sort_tends_to_the_sorting_permutation():
    values = torch.tensor([0.3, -1.0, 2.0, 0.0])
    hard = soft_sort(values, temperature=1e-4)
    assert torch.equal(hard.argmax(-1), values.argsort())
    assert torch.allclose(hard.sum(-1), torch.ones(4))
    soft = soft_sort(values, temperature=10.0)
    assert soft.max() < 0.5, "a large temperature spreads each rank over several items"


def test_slice_weights_follow_transport_costs():
    """t = 0 averages the slices; a large t keeps the slice whose plan is cheapest in the ambient space."""
    q, k = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    directions = slice_directions(4, 3, seed=2).double()
    per_slice = [sliced_transport_plan(q, k, directions[:, [slice_index]], 1e-2) for slice_index in range(3)]
    average = sliced_transport_plan(q, k, directions, 1e-2, cost_temperature=0.0)
    assert torch.allclose(average, sum(per_slice) / 3, atol=1e-12)
    distances = torch.cdist(q, k) / 4**0.25
    costs = torch.stack([(p * distances).sum() / 9 for p in per_slice])
    sharp = sliced_transport_plan(q, k, directions, 1e-2, cost_temperature=1e4)
    assert torch.allclose(sharp, per_slice[int(costs.argmin())], atol=1e-9)


def test_padding_equals_the_problem_on_valid_tokens():
    q, k = torch.randn(3, 9, 4, dtype=torch.float64), torch.randn(3, 9, 4, dtype=torch.float64)
    valid = torch.arange(9) < torch.tensor([[9], [6], [2]])
    directions = slice_directions(4).double()
    plan = sliced_transport_plan(q, k, directions, 5e-2, mask=valid)
    for b in range(3):
        v = valid[b]
        reference = sliced_transport_plan(q[b, v], k[b, v], directions, 5e-2)
        assert torch.allclose(plan[b][v][:, v], reference, atol=1e-12)
        assert plan[b][~v].abs().sum() == 0 and plan[b][:, ~v].abs().sum() == 0


def test_gradients_are_finite_with_padding():
    q = torch.randn(2, 3, 6, 4, requires_grad=True)
    k = torch.randn(2, 3, 6, 4, requires_grad=True)
    valid = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])[:, None, :]
    sliced_transport_plan(q, k, slice_directions(4), mask=valid).square().sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="equal numbers"):
        sliced_transport_plan(torch.randn(5, 4), torch.randn(6, 4), slice_directions(4))
    with pytest.raises(ValueError, match="temperature"):
        soft_sort(torch.randn(5), temperature=0.0)
