"""The fused two-pass ASAP path equals the dense reference."""

import pytest
import torch
from conftest import random_padding

from asap.nn import Attention, key_padding_mask
from asap.ops import attention_with_lse, c_transform_attention_matrix, fused_c_transform_attention


@pytest.mark.parametrize("two_sided", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_equals_dense(two_sided, masked):
    q, k, v = (2 * torch.randn(3, 4, 40, 16) for _ in range(3))
    valid = random_padding(3, 40, min_valid=5)
    tokens = valid[:, None, :] if masked else None
    pairs = (valid[:, :, None] & valid[:, None, :])[:, None] if masked else None
    f = torch.randn(3, 4, 40) * (valid[:, None, :] if masked else 1)
    with torch.no_grad():
        dense = c_transform_attention_matrix(q, k, f, pairs, two_sided) @ v
        fused = fused_c_transform_attention(q, k, v, f, tokens, two_sided)
    assert (fused - dense).abs().max() < 1e-5 * dense.abs().max()


@pytest.mark.parametrize("masked", [False, True])
def test_a_side_per_head_is_each_heads_fixed_side(masked):
    """``two_sided`` as a per-head tensor gives, head by head, the matrix and the output of that fixed side."""
    q, k, v = (2 * torch.randn(3, 4, 30, 16) for _ in range(3))
    valid = random_padding(3, 30, min_valid=5)
    tokens = valid[:, None, :] if masked else None
    pairs = (valid[:, :, None] & valid[:, None, :])[:, None] if masked else None
    f = torch.randn(3, 4, 30) * (valid[:, None, :] if masked else 1)
    sides = torch.tensor([True, False, False, True])
    with torch.no_grad():
        fixed = {side: c_transform_attention_matrix(q, k, f, pairs, side) for side in (True, False)}
        expected = torch.stack([fixed[bool(side)][:, head] for head, side in enumerate(sides)], dim=1)
        per_head = c_transform_attention_matrix(q, k, f, pairs, sides)
        fused = fused_c_transform_attention(q, k, v, f, tokens, sides)
    assert not torch.allclose(fixed[True], fixed[False], atol=1e-3)  # the sides differ, so the test can fail
    torch.testing.assert_close(per_head, expected, rtol=0, atol=1e-6)
    assert (fused - expected @ v).abs().max() < 1e-5 * (expected @ v).abs().max()


def test_attention_with_lse_matches_dense_and_is_differentiable():
    q, k, v = (torch.randn(2, 3, 9, 8) for _ in range(3))
    bias = torch.randn(2, 3, 9)
    scores = q @ k.transpose(-1, -2) / 8**0.5 + bias.unsqueeze(-2)
    with torch.no_grad():
        out, lse = attention_with_lse(q, k, v, bias)
    assert torch.allclose(lse, scores.logsumexp(-1), atol=1e-5)
    assert torch.allclose(out, scores.softmax(-1) @ v, atol=1e-5)
    q.requires_grad_()
    out, _ = attention_with_lse(q, k, v, bias)  # falls back to the differentiable dense path
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("features", ["sliced", "sliced+lse"])
def test_asap_layer_fused_and_dense_agree(features):
    options = {"num_slices": 8, "features": features}
    layer = Attention(32, num_heads=4, normaliser="asap", normaliser_options=options)
    torch.nn.init.normal_(layer.normaliser.dual_map.weight, std=0.3)
    layer.normaliser.calibrated.fill_(True)
    layer.eval()
    x = torch.randn(3, 12, 32)
    mask = key_padding_mask(random_padding(3, 12))
    with torch.no_grad():
        fused = layer(x, attn_mask=mask)
        layer.normaliser.fused = False
        dense = layer(x, attn_mask=mask)
    assert torch.allclose(fused, dense, atol=1e-5)
