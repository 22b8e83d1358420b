"""Expected sliced transport (ESPFormer) plans."""

import math

import numpy as np
import ot
import pytest
import torch

from asap.ops import project, slice_directions, sliced_transport_plan, soft_sort
from asap.ops.sliced_transport import hard_sorted_plan


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


OLD = {"sort_temperature": 1e-2, "cost_temperature": 0.1, "cost_reduction": "mean"}  # + input_scale d^-1/4


def espformer_reference(q, k, directions, scale, tau, t, reduction="sum"):
    """ESPFormer's attention written out plainly, one problem ``(n, d)`` at a time, with loops."""
    n, d = q.shape
    q, k = q * scale, k * scale
    plans, costs = [], []
    for theta in directions.T:
        sides = []
        for points in (q, k):
            x = points @ theta
            ranked = sorted(x.tolist())
            pi = torch.stack([torch.softmax(-((x - ranked[r]) ** 2) / tau, dim=0) for r in range(n)])
            sides.append(pi)
        gamma = sides[0].T @ sides[1]
        cost = sum(gamma[i, j] * torch.linalg.norm(q[i] - k[j]) for i in range(n) for j in range(n))
        plans.append(gamma)
        costs.append(cost / n if reduction == "mean" else cost)
    weights = torch.softmax(-t * torch.stack(costs), dim=0)
    return sum(w * gamma for w, gamma in zip(weights, plans, strict=True)), weights


def slice_weights_of(q, k, directions, **options):
    """The slice weights inside sliced_transport_plan's output, by least squares on its one-slice plans."""
    plan = sliced_transport_plan(q, k, directions, **options)
    slices = directions.shape[1]
    per_head = directions.T.unsqueeze(-1)  # (L, d, 1): slice l as the only slice of "head" l
    per_slice = sliced_transport_plan(q.expand(slices, *q.shape), k.expand(slices, *k.shape), per_head, **options)
    weights = torch.linalg.lstsq(per_slice.flatten(1).T, plan.flatten().unsqueeze(-1)).solution[:, 0]
    assert torch.allclose(torch.einsum("l,lij->ij", weights, per_slice), plan, atol=1e-10)
    return weights


@pytest.mark.parametrize("slices", [None, 3])
def test_defaults_are_espformer_published_settings(slices):
    n, d = 6, 4
    q, k = torch.randn(2, n, d, dtype=torch.float64), torch.randn(2, n, d, dtype=torch.float64)
    directions = slice_directions(d, slices, seed=1).double()
    plan = sliced_transport_plan(q, k, directions)
    for b in range(2):
        reference, _ = espformer_reference(q[b], k[b], directions, d**-0.5, 1e-3, 10.0)
        torch.testing.assert_close(plan[b], reference, rtol=0, atol=1e-12)
    old, _ = espformer_reference(q[0], k[0], directions, d**-0.25, 1e-2, 0.1, "mean")
    assert (plan[0] - old).abs().max() > 1e-3, "the published settings are not the old defaults"


def test_old_defaults_are_recovered_with_the_old_knobs():
    n, d = 6, 4
    q, k = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    directions = slice_directions(d, 5, seed=2).double()
    plan = sliced_transport_plan(q, k, directions, input_scale=d**-0.25, **OLD)
    reference, _ = espformer_reference(q, k, directions, d**-0.25, 1e-2, 0.1, "mean")
    torch.testing.assert_close(plan, reference, rtol=0, atol=1e-12)
    # The mapping: inputs scaled by a = d^-1/4 (old) vs d^-1/2 (published) give the same soft sorts when tau is
    # divided by (d^1/4)^2 = sqrt(d), and the same slice weights when t is multiplied by d^1/4.
    x = q @ directions * d**-0.25
    torch.testing.assert_close(soft_sort(x, 1e-2), soft_sort(x * d**-0.25, 1e-2 / math.sqrt(d)), rtol=0, atol=1e-12)
    assert (soft_sort(x, 1e-2) - soft_sort(x * d**-0.25, 1e-2)).abs().max() > 1e-2, "tau alone does not map"
    mapped = sliced_transport_plan(
        q, k, directions, 1e-2 / math.sqrt(d), 0.1 * d**0.25, cost_reduction="mean"
    )  # input_scale: the published default
    torch.testing.assert_close(mapped, plan, rtol=0, atol=1e-12)


def test_published_slice_weights_pick_a_slice_and_old_ones_are_near_uniform():
    n, d = 32, 16
    directions = slice_directions(d).double()  # the axes: L = d
    largest = []
    for _ in range(4):
        q, k = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
        published = slice_weights_of(q, k, directions)
        old = slice_weights_of(q, k, directions, input_scale=d**-0.25, **OLD)
        assert published.sum().sub(1).abs() < 1e-10 and old.sum().sub(1).abs() < 1e-10
        assert old.max() < 1.05 / d and old.min() > 0.95 / d, f"old knobs: near uniform, got {old.tolist()}"
        assert published.max() > 5 / d, f"t = 10 on summed costs favours one slice, got {published.tolist()}"
        largest.append(float(published.max()))
    _, reference = espformer_reference(q[:8], k[:8], directions, d**-0.5, 1e-3, 10.0)
    torch.testing.assert_close(slice_weights_of(q[:8], k[:8], directions), reference, rtol=0, atol=1e-8)
    assert sorted(largest)[1] > 0.5, f"the cheapest slice takes most of the mass, got {largest}"


def test_one_slice_at_small_temperature_is_the_exact_1d_plan():
    n, d = 7, 4
    q, k = torch.randn(2, n, d, dtype=torch.float64), torch.randn(2, n, d, dtype=torch.float64)
    direction = slice_directions(d, 1, seed=0).double()
    soft = sliced_transport_plan(q, k, direction, sort_temperature=1e-6)
    hard = sliced_transport_plan(q, k, direction, hard_sort=True)
    x, y = project(q, direction)[..., 0], project(k, direction)[..., 0]
    for b in range(2):
        exact = n * ot.emd(np.full(n, 1 / n), np.full(n, 1 / n), -np.outer(x[b].numpy(), y[b].numpy()))
        assert np.abs(soft[b].numpy() - exact).max() < 1e-6
        assert np.array_equal(hard[b].numpy(), exact), "hard sort: the exact monotone matching"


def test_hard_sort_is_a_matching_and_the_limit_of_soft_sort():
    q, k = torch.randn(3, 2, 10, 8, dtype=torch.float64), torch.randn(3, 2, 10, 8, dtype=torch.float64)
    directions = slice_directions(8, 5, seed=4).double()
    hard = sliced_transport_plan(q, k, directions, hard_sort=True)
    ones = torch.ones(3, 2, 10, dtype=torch.float64)
    assert torch.allclose(hard.sum(-1), ones, rtol=0, atol=1e-12)
    assert torch.allclose(hard.sum(-2), ones, rtol=0, atol=1e-12)
    one_slice = sliced_transport_plan(q, k, directions[:, :1], hard_sort=True)
    assert torch.equal(one_slice.sum(-1), ones) and torch.equal(one_slice.sum(-2), ones)
    assert torch.equal(one_slice, one_slice.round()), "a permutation matrix"
    gaps = [(sliced_transport_plan(q, k, directions, tau) - hard).abs().max() for tau in (1e-3, 1e-5, 1e-9)]
    assert gaps[0] > 1e-3 and gaps[-1] < 1e-9 and gaps[0] > gaps[1] > gaps[2], [float(g) for g in gaps]


def test_hard_sort_with_padding():
    x = torch.tensor([[0.5, -1.0, 2.0, 7.0, -9.0], [3.0, 1.0, 2.0, 0.0, -5.0]])
    y = torch.tensor([[1.0, 0.0, -2.0, -8.0, 6.0], [0.0, 4.0, -1.0, 9.0, 8.0]])
    valid = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    plan = hard_sorted_plan(x, y, valid)
    expected = torch.zeros(2, 5, 5)
    for b, pairs in enumerate([[(0, 1), (1, 2), (2, 0)], [(0, 3), (1, 0), (2, 1), (3, 2)]]):
        for i, j in pairs:
            expected[b, i, j] = 1.0
    assert torch.equal(plan, expected)
    q, k = torch.randn(3, 9, 4, dtype=torch.float64), torch.randn(3, 9, 4, dtype=torch.float64)
    valid = torch.arange(9) < torch.tensor([[9], [6], [2]])
    directions = slice_directions(4, 3, seed=5).double()
    full = sliced_transport_plan(q, k, directions, mask=valid, hard_sort=True)
    for b in range(3):
        v = valid[b]
        assert torch.allclose(full[b][v][:, v], sliced_transport_plan(q[b, v], k[b, v], directions, hard_sort=True))
        assert full[b][~v].abs().sum() == 0 and full[b][:, ~v].abs().sum() == 0
        assert torch.allclose(full[b][v].sum(-1), torch.ones(int(v.sum()), dtype=torch.float64), atol=1e-12)


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


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_slice_weights_follow_transport_costs(reduction):
    """t = 0 averages the slices; a large t keeps the slice whose plan is cheapest in the ambient space."""
    q, k = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    directions = slice_directions(4, 3, seed=2).double()
    options = {"sort_temperature": 1e-2, "cost_reduction": reduction}
    per_slice = [sliced_transport_plan(q, k, directions[:, [slice_index]], **options) for slice_index in range(3)]
    average = sliced_transport_plan(q, k, directions, cost_temperature=0.0, **options)
    assert torch.allclose(average, sum(per_slice) / 3, atol=1e-12)
    distances = torch.cdist(q, k) / 4**0.5  # the default input scale d^-1/2 on each side
    costs = torch.stack([(p * distances).sum() / (9 if reduction == "mean" else 1) for p in per_slice])
    sharp = sliced_transport_plan(q, k, directions, cost_temperature=1e4, **options)
    assert torch.allclose(sharp, per_slice[int(costs.argmin())], atol=1e-9)
    logits = -5.0 * costs
    mixed = sliced_transport_plan(q, k, directions, cost_temperature=5.0, **options)
    expected = sum(w * p for w, p in zip(logits.softmax(0), per_slice, strict=True))
    assert torch.allclose(mixed, expected, atol=1e-12)


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
    with pytest.raises(ValueError, match="cost reduction"):
        sliced_transport_plan(torch.randn(5, 4), torch.randn(5, 4), slice_directions(4), cost_reduction="max")
