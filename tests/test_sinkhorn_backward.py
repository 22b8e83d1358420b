"""The lean Sinkhorn backward equals autograd through the unrolled iterations."""

import pytest
import torch
from conftest import random_padding

from asap.ops import attention_from_potentials, lean_sinkhorn_attention_matrix, sinkhorn


def unrolled(scores, n_iters, mask=None):
    return attention_from_potentials(scores, *sinkhorn(scores, n_iters, mask), mask)


@pytest.mark.parametrize("n_iters", [0, 1, 2, 5])
@pytest.mark.parametrize("masked", [False, True])
def test_values_and_gradients_equal_unrolled_autograd(n_iters, masked):
    scores = 2 * torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    valid = random_padding(2, 7, min_valid=3)
    mask = (valid[:, :, None] & valid[:, None, :])[:, None] if masked else None
    lean, reference = lean_sinkhorn_attention_matrix(scores, n_iters, mask), unrolled(scores, n_iters, mask)
    assert torch.allclose(lean, reference, atol=1e-12, rtol=0)
    weights = torch.randn_like(lean)
    (grad_lean,) = torch.autograd.grad((lean * weights).sum(), scores)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), scores)
    assert (grad_lean - grad_reference).abs().max() < 1e-5 * grad_reference.abs().max()
    assert (grad_lean - grad_reference).abs().max() < 1e-12


def test_gradcheck_with_padding_and_rectangular_key_mask():
    scores = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    keys = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, :]
    assert torch.autograd.gradcheck(lambda s: lean_sinkhorn_attention_matrix(s, 3, keys), (scores,))


def test_float32_gradients_close_to_float64():
    scores = 3 * torch.randn(2, 4, 16, 16, dtype=torch.float64)
    weights = torch.randn_like(scores)
    grads = []
    for dtype in (torch.float32, torch.float64):
        s = scores.to(dtype).requires_grad_()
        (lean_sinkhorn_attention_matrix(s, 4) * weights.to(dtype)).sum().backward()
        grads.append(s.grad.double())
    assert (grads[0] - grads[1]).abs().max() < 1e-5
