"""The fused two-pass ASAP path equals the dense reference."""

import pytest
import torch
from conftest import random_padding

import asap.ops.fused
from asap.nn import Attention, key_padding_mask
from asap.ops import (
    asap_impl,
    attention_with_lse,
    biased_lse,
    c_transform_attention_matrix,
    fused_c_transform_attention,
    lse_pass_impl,
)
from asap.ops.fused import BLOCKED_LSE_MIN_HEAD_DIM, BLOCKED_LSE_MIN_LEN, NO_MASS


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


def dense_lse(q, k, bias):
    """The float64 reference of a biased log-sum-exp pass."""
    q, k, bias = q.double(), k.double(), bias.double()
    return (q @ k.mT / q.shape[-1] ** 0.5 + bias.unsqueeze(-2)).logsumexp(-1)


@pytest.mark.parametrize("impl", ["blocked", "kernel"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(2, 3, 17, 40, 8), (1, 2, 300, 300, 64), (3, 1, 1, 5, 4)], ids=str)
def test_lse_pass_equals_the_dense_log_sum_exp(impl, dtype, tolerance, shape, monkeypatch):
    """Both log-sum-exp passes against the float64 reference, with padded keys at NO_MASS; the blocks made small
    so that the blocked pass splits rows and groups problems (a block boundary that dropped or repeated a row
    would show)."""
    monkeypatch.setattr(asap.ops.fused, "LSE_BLOCK_SCORES", 700)
    batch, heads, n, m, d = shape
    generator = torch.Generator().manual_seed(0)
    q = 2 * torch.randn(batch, heads, n, d, generator=generator, dtype=dtype)
    k = 2 * torch.randn(batch, heads, m, d, generator=generator, dtype=dtype)
    bias = torch.randn(batch, heads, m, generator=generator, dtype=dtype)
    bias[..., m // 2 :: 3] = NO_MASS
    with torch.no_grad():
        lse = biased_lse(q, k, bias, impl)
    assert lse.dtype == dtype and lse.shape == (batch, heads, n)
    reference = dense_lse(q, k, bias)
    assert ((lse.double() - reference).abs() / reference.abs().clamp_min(1)).max() < tolerance


def test_lse_pass_rule_gradients_and_bad_names():
    assert lse_pass_impl(BLOCKED_LSE_MIN_HEAD_DIM, BLOCKED_LSE_MIN_LEN, "cpu") == "blocked"
    assert lse_pass_impl(BLOCKED_LSE_MIN_HEAD_DIM - 1, 4096, "cpu") == "kernel"
    assert lse_pass_impl(128, BLOCKED_LSE_MIN_LEN - 1, "cpu") == "kernel"
    assert lse_pass_impl(128, 4096, "cuda") == "kernel"
    q, k = torch.randn(2, 1, 2, 6, 4, dtype=torch.float64).unbind(0)
    bias = torch.randn(1, 2, 6, dtype=torch.float64, requires_grad=True)
    for impl in ("blocked", "kernel", "auto"):  # where a gradient is needed every pass is the dense one
        (grad,) = torch.autograd.grad(biased_lse(q, k, bias, impl).sum(), bias)
        (expected,) = torch.autograd.grad(dense_lse(q, k, bias).sum(), bias)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="unknown log-sum-exp pass"):
        biased_lse(q, k, bias.detach(), "fast")


@pytest.mark.parametrize("lse_impl", ["blocked", "kernel"])
@pytest.mark.parametrize("two_sided", [True, False])
def test_fused_asap_equals_dense_in_float64_by_either_column_pass(lse_impl, two_sided):
    q, k, v = (2 * torch.randn(2, 2, 50, 40, dtype=torch.float64) for _ in range(3))
    valid = random_padding(2, 50, min_valid=5)
    pairs = (valid[:, :, None] & valid[:, None, :])[:, None]
    f = torch.randn(2, 2, 50, dtype=torch.float64) * valid[:, None, :]
    dense = c_transform_attention_matrix(q, k, f, pairs, two_sided) @ v
    fused = fused_c_transform_attention(q, k, v, f, valid[:, None, :], two_sided, lse_impl)
    assert (fused - dense).abs().max() < 1e-12 * dense.abs().max()


def test_asap_impl_switch_one_value_and_its_rule():
    """``impl`` picks the dense or the fused path with one value; ``auto`` follows asap_impl; a bad name is named."""
    assert {asap_impl(n, device) for n in (1, 17, 1024, 65536) for device in ("cpu", "cuda")} == {"fused"}
    torch.manual_seed(0)
    x = torch.randn(2, 70, 64, dtype=torch.float64)
    mask = key_padding_mask(random_padding(2, x.shape[1], min_valid=4))
    layer = Attention(64, num_heads=2, normaliser="asap", normaliser_options={"num_slices": 8}).double().eval()
    layer.normaliser.calibrated.fill_(True)
    torch.nn.init.normal_(layer.normaliser.dual_map.weight, std=0.3)
    outputs = {}
    for impl in ("dense", "fused", "auto"):
        layer.normaliser.impl = impl
        with torch.no_grad():
            outputs[impl] = layer(x, attn_mask=mask)
    assert (outputs["dense"] - outputs["fused"]).abs().max() < 1e-12
    assert torch.equal(outputs["auto"], outputs["fused"]), "auto: fused"
    with pytest.raises(ValueError, match="unknown ASAP implementation"):
        Attention(64, num_heads=2, normaliser="asap", normaliser_options={"impl": "matrix"})
