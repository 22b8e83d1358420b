"""Flash Sinkhorn equals the dense Sinkhorn reference in value and in its unrolled gradients, holds no n x n
tensor, and is one of the Sinkhorn normaliser's implementations."""

import pytest
import torch
from conftest import random_padding
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import asap.ops.fused
from asap import ops
from asap.nn import Attention, key_padding_mask
from asap.nn.normalisers import Sinkhorn
from asap.ops import FLASH_SINKHORN_MIN_LEN, FLASH_SINKHORN_SMALL_HEADS, sinkhorn_impl


def qkv(batch=2, heads=3, n=11, d=8, scale=2.0, dtype=torch.float64, m=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, heads, n, d), (batch, heads, m or n, d), (batch, heads, m or n, d)]
    return [(scale * torch.randn(shape, generator=generator, dtype=dtype)).requires_grad_() for shape in shapes]


def dense_reference(q, k, v, n_iters, valid=None):
    """Autograd through the unrolled log-domain iterations on the n x n scores."""
    pairs = None if valid is None else (valid[:, :, None] & valid[:, None, :])[:, None]
    return ops.sinkhorn_attention_matrix(q, k, n_iters, pairs) @ v


@pytest.mark.parametrize("n_iters", [0, 1, 3, 6])
@pytest.mark.parametrize("masked", [False, True])
def test_float64_value_and_gradients_equal_unrolled_autograd(n_iters, masked):
    q, k, v = qkv()
    valid = random_padding(2, 11, min_valid=3) if masked else None
    flash = ops.flash_sinkhorn_attention(q, k, v, n_iters, None if valid is None else valid[:, None])
    reference = dense_reference(q, k, v, n_iters, valid)
    assert (flash - reference).abs().max() < 1e-12
    upstream = torch.randn_like(flash)
    grads = torch.autograd.grad((flash * upstream).sum(), (q, k, v))
    reference_grads = torch.autograd.grad((reference * upstream).sum(), (q, k, v))
    for name, grad, expected in zip("qkv", grads, reference_grads, strict=True):
        assert (grad - expected).abs().max() < 1e-10, name
        assert expected.abs().max() > 1e-3, f"the {name} gradient is not trivially zero"


@pytest.mark.parametrize("lse_impl", ["blocked", "kernel"])
def test_half_steps_by_either_log_sum_exp_pass_equal_unrolled_autograd(lse_impl, monkeypatch):
    """The forward's 2T half-steps run on the log-sum-exp-only pass its rule picks by head dimension: both passes,
    forced, give the reference's value and gradients (float64, padding, blocks small enough to split the rows)."""
    monkeypatch.setattr(asap.ops.fused, "lse_pass_impl", lambda head_dim, seq_len, device: lse_impl)
    monkeypatch.setattr(asap.ops.fused, "LSE_BLOCK_SCORES", 200)
    q, k, v = qkv(n=37, d=40, scale=1.0)
    valid = random_padding(2, 37, min_valid=3)
    flash = ops.flash_sinkhorn_attention(q, k, v, 3, valid[:, None])
    reference = dense_reference(q, k, v, 3, valid)
    assert (flash - reference).abs().max() < 1e-12
    grads = torch.autograd.grad(flash.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(grads, reference_grads, strict=True))


def test_rectangular_problem_without_mask():
    q, k, v = qkv(n=7, m=12)
    flash = ops.flash_sinkhorn_attention(q, k, v, 2)
    reference = dense_reference(q, k, v, 2)
    assert (flash - reference).abs().max() < 1e-12
    grads = torch.autograd.grad(flash.sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.sum(), (q, k, v))
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(grads, reference_grads, strict=True))


def test_gradcheck_with_padding():
    q, k, v = qkv(batch=2, heads=1, n=6, d=4, scale=1.0)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None]
    assert torch.autograd.gradcheck(lambda q, k, v: ops.flash_sinkhorn_attention(q, k, v, 3, valid), (q, k, v))


def test_float32_within_1e6_of_the_float64_reference():
    """Unit-variance inputs (scores of order one, as in a trained layer), n = 256."""
    q, k, v = (t.detach() for t in qkv(n=256, d=16, scale=1.0))
    reference = dense_reference(q, k, v, 3)
    flash = ops.flash_sinkhorn_attention(q.float(), k.float(), v.float(), 3)
    assert (flash.double() - reference).abs().max() < 1e-6


def test_padded_tokens_neither_send_nor_receive_mass():
    q, k, v = qkv()
    valid = random_padding(2, 11, min_valid=3)
    out = ops.flash_sinkhorn_attention(q, k, v, 3, valid[:, None])
    assert (out[~valid.unsqueeze(1).expand(-1, 3, -1)] == 0).all(), "padded queries get a zero output"
    for b in range(2):  # each sequence alone, without its padding, gives the same valid outputs
        alone = ops.flash_sinkhorn_attention(
            q[b : b + 1, :, valid[b]], k[b : b + 1, :, valid[b]], v[b : b + 1, :, valid[b]], 3
        )
        assert (out[b : b + 1, :, valid[b]] - alone).abs().max() < 1e-12
    out.square().sum().backward()
    for t in (q, k, v):
        assert (t.grad[~valid.unsqueeze(1).expand(-1, 3, -1)] == 0).all(), "padded tokens get no gradient"


class LargestTensor(TorchDispatchMode):
    """The largest tensor (in elements) any aten op returns while active, forward and backward alike."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self.numel = max(self.numel, tensor.numel())
        return out


@pytest.mark.parametrize("impl", ["flash", "lean"])
def test_only_flash_never_creates_an_n_by_n_tensor(impl):
    n = 256
    q, k, v = (t.detach().float().requires_grad_() for t in qkv(batch=1, heads=2, n=n))
    layer = Sinkhorn(2, 8, n_iters=3, impl=impl)
    with LargestTensor() as largest:
        layer(q, k, v).square().sum().backward()
    if impl == "flash":
        assert largest.numel <= 2 * n * (8 + 1), "O(n d) memory: nothing larger than a padded q, k or v"
    else:
        assert largest.numel >= 2 * n * n, "the check sees the lean teacher's n x n buffers"


@pytest.mark.parametrize("masked", [False, True])
def test_normaliser_implementations_agree_in_value_and_gradient(masked):
    torch.manual_seed(0)
    layer = Attention(32, num_heads=4, normaliser="sinkhorn", normaliser_options={"n_iters": 3}).double()
    x = torch.randn(3, 10, 32, dtype=torch.float64)
    mask = key_padding_mask(random_padding(3, 10, min_valid=3)) if masked else None
    outputs, grads = {}, {}
    for impl in ("flash", "lean", "unrolled"):
        layer.normaliser.impl = impl
        layer.zero_grad()
        outputs[impl] = layer(x, attn_mask=mask)
        outputs[impl].square().sum().backward()
        grads[impl] = layer.qkv.weight.grad.clone()
    for impl in ("lean", "unrolled"):
        assert (outputs["flash"] - outputs[impl]).abs().max() < 1e-12, impl
        assert (grads["flash"] - grads[impl]).abs().max() < 1e-10, impl


def test_functional_switch_gives_one_value_per_implementation():
    q, k, v = qkv()
    valid = random_padding(2, 11, min_valid=3)[:, None]
    outputs = {impl: ops.sinkhorn_attention(q, k, v, 3, valid, impl=impl) for impl in ("flash", "lean", "unrolled")}
    assert all((outputs["flash"] - out).abs().max() < 1e-12 for out in outputs.values())
    assert torch.equal(ops.sinkhorn_attention(q, k, v, 3, valid), outputs["lean"]), "auto: lean at n = 11 on CPU"
    with pytest.raises(ValueError, match="unknown Sinkhorn implementation"):
        ops.sinkhorn_attention(q, k, v, 3, impl="dense")


def test_auto_rule_and_its_fallbacks():
    cpu = torch.device("cpu")
    assert sinkhorn_impl(FLASH_SINKHORN_MIN_LEN - 1, cpu) == "lean"
    assert sinkhorn_impl(FLASH_SINKHORN_MIN_LEN, cpu) == "flash"
    assert sinkhorn_impl(16, torch.device("cuda")) == "flash"
    for mode, (largest_head_dim, shortest) in FLASH_SINKHORN_SMALL_HEADS.items():
        training = mode == "training"
        assert sinkhorn_impl(shortest, cpu, largest_head_dim, training) == "flash"
        assert sinkhorn_impl(shortest - 1, cpu, largest_head_dim, training) == "lean"
        assert sinkhorn_impl(shortest, cpu, largest_head_dim + 1, training) == "lean"
    q, k, v = (t.detach().float() for t in qkv(batch=1, heads=1, n=1024, d=32))
    calls = []
    real_flash = ops.normalised_attention.flash_sinkhorn_attention
    with pytest.MonkeyPatch.context() as patch:  # auto picks flash at inference, lean when a gradient is needed
        patch.setattr(
            ops.normalised_attention, "flash_sinkhorn_attention", lambda *a: calls.append(1) or real_flash(*a)
        )
        ops.sinkhorn_attention(q, k, v, 1)
        assert calls == [1]
        ops.sinkhorn_attention(q.requires_grad_(), k, v, 1)
        assert calls == [1]
    layer = Sinkhorn(2, 8, impl="flash").train()
    q, k, v = (t.detach().float() for t in qkv(batch=1, heads=2, n=8))
    with pytest.raises(ValueError, match="no attention dropout"):
        layer(q, k, v, dropout_p=0.1)
    layer.impl = "auto"  # falls back to lean with dropout, and with a mask that is not padding
    assert layer(q, k, v, dropout_p=0.1).shape == q.shape
    causal = torch.ones(1, 1, 8, 8, dtype=torch.bool).tril()
    assert torch.allclose(layer.eval()(q, k, v, causal), Sinkhorn(2, 8, impl="lean")(q, k, v, causal))
    with pytest.raises(ValueError, match="unknown Sinkhorn implementation"):
        Sinkhorn(2, 8, impl="fast")


def test_bad_input_is_named():
    q, k, v = (t.detach() for t in qkv())
    with pytest.raises(ValueError, match="n_iters"):
        ops.flash_sinkhorn_attention(q, k, v, -1)
    with pytest.raises(ValueError, match=r"\(B, H, n, d\)"):
        ops.flash_sinkhorn_attention(q[0], k[0], v[0], 3)
    with pytest.raises(ValueError, match="token_mask must be"):
        ops.flash_sinkhorn_attention(q, k, v, 3, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid token"):
        ops.flash_sinkhorn_attention(q, k, v, 3, torch.zeros(2, 1, 11, dtype=torch.bool))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32])
def test_cuda_equals_cpu_reference(dtype):
    q, k, v = qkv(n=100, d=64, scale=1.0)
    valid = random_padding(2, 100, min_valid=20)
    reference = dense_reference(q, k, v, 3, valid)
    reference_grads = torch.autograd.grad(reference.sum(), (q, k, v))
    on_gpu = [t.detach().to("cuda", dtype).requires_grad_() for t in (q, k, v)]
    out = ops.flash_sinkhorn_attention(*on_gpu, 3, valid[:, None].cuda())
    grads = torch.autograd.grad(out.sum(), on_gpu)
    assert (out.double().cpu() - reference).abs().max() < 1e-4
    for grad, expected in zip(grads, reference_grads, strict=True):
        assert (grad.double().cpu() - expected).abs().max() < 1e-3 * expected.abs().max()


def test_bias_in_head_dimension_route_gives_the_same_values_and_gradients(monkeypatch):
    """CUDA's route (bias in an extra head dimension, widths aligned to 8) run with the CPU kernel: flash Sinkhorn
    and ASAP's fused path give what the broadcast-mask route gives."""
    q, k, v = qkv(n=13, d=12)
    valid = random_padding(2, 13, min_valid=4)
    f = torch.randn(2, 3, 13, dtype=torch.float64) * valid[:, None]
    results = []
    for in_head_dim in (False, True):
        monkeypatch.setitem(asap.ops.fused.BIAS_IN_HEAD_DIM, "cpu", in_head_dim)
        out = ops.flash_sinkhorn_attention(q, k, v, 3, valid[:, None])
        with torch.no_grad():
            fused = ops.fused_c_transform_attention(q, k, v, f, valid[:, None])
        results.append((out, fused, *torch.autograd.grad(out.square().sum(), (q, k, v))))
    for mask_route, head_dim_route in zip(*results, strict=True):
        assert (mask_route - head_dim_route).abs().max() < 1e-12
