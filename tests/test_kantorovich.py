"""Exact 1-D Kantorovich potentials: feasibility, and optimality against POT's exact LP solver."""

import numpy as np
import ot
import pytest
import torch

from asap.ops import kantorovich_1d
from asap.ops.kantorovich import _numpy_argsort, query_potentials_1d


def pot_costs(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Exact OT cost per problem for c(x, y) = -x y, from POT's network simplex on the full cost matrix."""
    xs = x.movedim(-1, -2).reshape(-1, x.shape[-2]).double().numpy()
    ys = y.movedim(-1, -2).reshape(-1, y.shape[-2]).double().numpy()
    n = xs.shape[1]
    uniform = np.full(n, 1 / n)
    return np.array([ot.emd2(uniform, uniform, -np.outer(a, b)) for a, b in zip(xs, ys, strict=True)])


def check_potentials(x, y, phi, psi, atol=1e-9):
    slack = -x.unsqueeze(-2) * y.unsqueeze(-3) - phi.unsqueeze(-2) - psi.unsqueeze(-3)  # (..., n, n, L)
    assert slack.min() >= -atol, f"infeasible by {-slack.min():.2e}"
    primal = pot_costs(x, y)
    dual = (phi.mean(-2) + psi.mean(-2)).reshape(-1).numpy()
    gap = np.abs(dual - primal).max()
    assert gap < atol, f"duality gap {gap:.2e}"
    return gap


INPUTS = {
    "random": lambda: (torch.randn(2, 3, 9, 5, dtype=torch.float64), torch.randn(2, 3, 9, 5, dtype=torch.float64)),
    "tied": lambda: (torch.randint(-2, 3, (4, 8, 6)).double(), torch.randint(-2, 3, (4, 8, 6)).double()),
    "sorted": lambda: (
        torch.linspace(-1, 2, 10, dtype=torch.float64)[:, None].expand(10, 4).clone(),
        torch.linspace(-3, 1, 10, dtype=torch.float64)[:, None].expand(10, 4).clone(),
    ),
    "reversed": lambda: (
        torch.linspace(2, -1, 10, dtype=torch.float64)[:, None].repeat(1, 3),
        torch.randn(10, 3, dtype=torch.float64),
    ),
}


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_potentials_are_feasible_and_optimal(kind):
    x, y = INPUTS[kind]()
    phi, psi = kantorovich_1d(x, y)
    gap = check_potentials(x, y, phi, psi)
    print(f"{kind}: duality gap vs POT {gap:.2e}")
    assert torch.allclose(phi.mean(-2), torch.zeros_like(phi.mean(-2)), atol=1e-12), "gauge: phi has zero mean"


def test_tied_values_get_equal_potentials():
    x = torch.tensor([[1.0], [0.0], [1.0], [-2.0]], dtype=torch.float64)
    y = torch.tensor([[3.0], [3.0], [0.5], [-1.0]], dtype=torch.float64)
    phi, psi = kantorovich_1d(x, y)
    assert phi[0] == phi[2]
    assert psi[0] == psi[1]


def test_masked_problems_equal_the_problems_on_valid_points():
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    y = torch.randn(3, 8, 4, dtype=torch.float64)
    valid = torch.arange(8) < torch.tensor([[8], [5], [2]])
    phi, psi = kantorovich_1d(x, y, valid)
    for b in range(3):
        v = valid[b]
        phi_ref, psi_ref = kantorovich_1d(x[b, v], y[b, v])
        assert torch.allclose(phi[b, v], phi_ref, atol=1e-12)
        assert torch.allclose(psi[b, v], psi_ref, atol=1e-12)
        assert (phi[b, ~v] == 0).all() and (psi[b, ~v] == 0).all()


def test_float32_and_gradients():
    x = torch.randn(2, 16, 8, requires_grad=True)
    y = torch.randn(2, 16, 8, requires_grad=True)
    phi, psi = kantorovich_1d(x, y)
    assert phi.dtype == torch.float32
    check_potentials(x.detach().double(), y.detach().double(), phi.detach().double(), psi.detach().double(), atol=1e-5)
    (phi.square().sum() + psi.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert x.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="share a shape"):
        kantorovich_1d(torch.randn(5, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="non-finite"):
        kantorovich_1d(torch.tensor([[1.0], [float("inf")]]), torch.randn(2, 1))
    with pytest.raises(ValueError, match="mask"):
        kantorovich_1d(torch.randn(5, 2), torch.randn(5, 2), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid"):
        kantorovich_1d(torch.randn(5, 2), torch.randn(5, 2), torch.zeros(5, dtype=torch.bool))


def reference_phi(x, y, mask=None):
    """kantorovich_1d's phi in the points-last layout of query_potentials_1d."""
    return kantorovich_1d(x.mT, y.mT, None if mask is None else mask.squeeze(-2))[0].mT


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("numpy_sort", [True, False])
@pytest.mark.parametrize("tied", [False, True])
def test_query_potentials_equal_kantorovich_phi(dtype, masked, numpy_sort, tied):
    shape = (3, 2, 5, 40)  # (B, H, L, n): points on the last dim
    if tied:
        x, y = (torch.randint(-3, 4, shape).to(dtype) for _ in range(2))
    else:
        x, y = (torch.randn(shape, dtype=dtype) for _ in range(2))
    mask = None
    if masked:  # per batch and token, shared by heads and slices; one problem keeps a single valid point
        mask = torch.rand(3, 1, 1, 40) < 0.6
        mask[0] = True
        mask[1, ..., :] = False
        mask[1, ..., 7] = True
    phi = query_potentials_1d(x, y, mask, numpy_sort=numpy_sort)
    assert phi.dtype == dtype and phi.shape == shape
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(phi, reference_phi(x, y, mask), rtol=0, atol=atol)
    if masked:
        assert (phi.masked_select(~mask.expand(shape)) == 0).all()


def test_query_potentials_pick_torch_when_autograd_needs_it():
    x = torch.randn(2, 4, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 16, dtype=torch.float64)
    phi = query_potentials_1d(x, y)  # auto: torch's sort, differentiable
    torch.testing.assert_close(phi, reference_phi(x, y))
    phi.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="numpy_sort"):
        query_potentials_1d(x, y, numpy_sort=True)
    with torch.no_grad():  # no gradient needed: numpy's sort, same result
        torch.testing.assert_close(query_potentials_1d(x, y), phi.detach())


def test_query_potentials_bad_inputs():
    with pytest.raises(ValueError, match="share a shape"):
        query_potentials_1d(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(ValueError, match="mask"):
        query_potentials_1d(torch.randn(2, 5), torch.randn(2, 5), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid"):
        query_potentials_1d(torch.randn(2, 5), torch.randn(2, 5), torch.zeros(5, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_argsort_sorts_signed_zeros_ties_and_extremes(dtype):
    info = torch.finfo(dtype)
    special = torch.tensor(
        [0.0, -0.0, info.max, -info.max, info.tiny, -info.tiny, 1e-45, -1e-45, 1.0, -1.0], dtype=dtype
    )
    x = torch.cat([special, torch.randn(200, dtype=dtype) * 1e3, torch.randint(-2, 3, (50,)).to(dtype)])
    x = torch.stack([x[torch.randperm(len(x))] for _ in range(4)])
    order = _numpy_argsort(x)
    assert torch.equal(order.sort(dim=-1).values, torch.arange(x.shape[-1]).expand_as(order))  # permutations
    assert torch.equal(x.gather(-1, order), x.sort(dim=-1).values)
