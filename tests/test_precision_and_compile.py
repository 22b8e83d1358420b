"""asap.ops' dtype policy (half-precision inputs, float32 potentials, outputs in the input dtype) against a
float64 reference, and every normaliser under torch.compile: no graph break, same output as eager."""

import copy

import pytest
import torch
from conftest import make_attention, random_padding

from asap import ops
from asap.nn import Attention, key_padding_mask
from asap.ops.masking import data_checks

# (normaliser, options): every normaliser and implementation a user can pick
LAYERS = [
    ("softmax", {}),
    ("sinkhorn", {"impl": "lean"}),
    ("sinkhorn", {"impl": "flash"}),
    ("sinkhorn", {"impl": "unrolled"}),
    ("sliced", {}),
    ("asap", {}),
    ("asap", {"impl": "fused"}),
    ("asap", {"two_sided": False, "impl": "fused"}),
    ("asap", {"impl": "dense"}),
]
IDS = [name + "".join(f"-{value}" for value in options.values()) for name, options in LAYERS]
# Relative error bounds (Frobenius) of a layer's output against float64 from the same rounded weights and input;
# the measured worst cases are about half of these (bf16 8.5e-3, fp16 1.1e-3; sliced 1.6e-2 and 1.8e-3).
BOUNDS = {torch.bfloat16: 1.5e-2, torch.float16: 2e-3}
SLICED_BOUNDS = {torch.bfloat16: 3e-2, torch.float16: 4e-3}  # SoftSort at tau = 1e-3 amplifies input rounding


def make_layer(name: str, options: dict, dim: int = 64, heads: int = 1) -> Attention:
    return make_attention(name, dim, heads, **options).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("seq_len, scale", [(48, 1.0), (512, 3.0)], ids=["short", "long-sharp"])
@pytest.mark.parametrize("name, options", LAYERS, ids=IDS)
def test_half_precision_layers_against_float64(name, options, seq_len, scale, dtype):
    layer = make_layer(name, options).to(dtype)
    x = (scale * torch.randn(2, seq_len, 64, generator=torch.Generator().manual_seed(1))).to(dtype)
    mask = key_padding_mask(torch.arange(seq_len) < torch.tensor([[seq_len], [2 * seq_len // 3]]))
    with torch.no_grad():
        out = layer(x, attn_mask=mask)
        reference = copy.deepcopy(layer).double()(x.double(), attn_mask=mask)
    assert out.dtype == dtype, "outputs come back in the input dtype"
    bound = (SLICED_BOUNDS if name == "sliced" else BOUNDS)[dtype]
    assert ((out.double() - reference).norm() / reference.norm()).item() < bound


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_potentials_are_float32_for_half_inputs(dtype):
    q, k = (torch.randn(2, 3, 16, 8).to(dtype) for _ in range(2))
    scores = ops.attention_scores(q, k)
    f, g = ops.sinkhorn(scores, 3)
    assert f.dtype == g.dtype == torch.float32
    assert ops.kantorovich_1d(q[..., :4], k[..., :4])[0].dtype == torch.float32
    assert ops.sinkhorn_attention_matrix(q, k, 3).dtype == dtype
    reference = ops.sinkhorn(scores.double(), 3)[0]
    assert (f.double() - reference).abs().max() < 1e-5, "half-precision scores, float32 iterations"


def test_flash_sinkhorn_gradients_in_bfloat16():
    q, k, v = (torch.randn(2, 2, 64, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    low = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    high = [t.to(torch.bfloat16).double().requires_grad_() for t in (q, k, v)]
    grads = torch.autograd.grad(ops.flash_sinkhorn_attention(*low, 3).float().square().sum(), low)
    out = ops.sinkhorn_attention_matrix(*high[:2], 3) @ high[2]
    reference = torch.autograd.grad(out.square().sum(), high)
    for grad, expected in zip(grads, reference, strict=True):
        assert grad.dtype == torch.bfloat16
        assert ((grad.double() - expected).norm() / expected.norm()).item() < 3e-2


@pytest.mark.parametrize("name, options", LAYERS, ids=IDS)
def test_no_graph_break_and_compiled_equals_eager(name, options):
    layer = make_layer(name, options, dim=32, heads=2)
    x = torch.randn(2, 12, 32)
    mask = key_padding_mask(random_padding(2, 12, min_valid=4))
    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(layer)(x, attn_mask=mask)
        assert explanation.graph_break_count == 0, [str(reason.reason)[:200] for reason in explanation.break_reasons]
        compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
        assert (compiled(x, attn_mask=mask) - layer(x, attn_mask=mask)).abs().max() < 1e-5


DYNAMIC_SHAPES = [(2, 12), (3, 20), (4, 33)]  # (batch, n): batch >= 2, as dynamo specialises sizes 0 and 1


@pytest.mark.parametrize("name, options", LAYERS, ids=IDS)
def test_compiled_with_dynamic_shapes_equals_eager_without_recompiling(name, options):
    """One graph (``dynamic=True``) serves three shapes: a second compile fails the test."""
    layer = make_layer(name, options, dim=32, heads=2)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True, dynamic=True)
    with torch.no_grad():
        for index, (batch, n) in enumerate(DYNAMIC_SHAPES):
            x = torch.randn(batch, n, 32, generator=torch.Generator().manual_seed(index))
            mask = key_padding_mask(random_padding(batch, n, min_valid=4, seed=index))
            with torch._dynamo.config.patch(error_on_recompile=index > 0):
                out = compiled(x, attn_mask=mask)
            assert (out - layer(x, attn_mask=mask)).abs().max() < 1e-5, (batch, n)


def test_data_checks_run_eagerly_and_can_be_switched_off():
    layer = make_layer("sinkhorn", {}, dim=32, heads=2)
    x = torch.randn(2, 12, 32)
    x[0, 3, 5] = torch.nan
    with pytest.raises(ValueError, match="non-finite"):
        layer(x)
    with data_checks(False):
        assert torch.isnan(layer(x)).any(), "unchecked, the NaN flows through"
    with pytest.raises(ValueError, match="non-finite"):
        layer(x)


def test_inputs_and_slice_directions_may_live_on_different_devices():
    """Directions are moved to the input's device and dtype (meta tensors stand in for a GPU)."""
    q = torch.randn(2, 3, 10, 8, device="meta", dtype=torch.float16)
    directions = ops.slice_directions(8, 4)  # CPU, float32
    assert ops.project(q, directions).device.type == "meta"
    assert ops.project(q, directions).dtype == torch.float16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name, options", LAYERS, ids=IDS)
def test_layers_on_cuda_equal_cpu(name, options):
    layer = make_layer(name, options, dim=64, heads=4)
    x = torch.randn(2, 40, 64)
    mask = key_padding_mask(random_padding(2, 40, min_valid=8))
    with torch.no_grad():
        expected = layer(x, attn_mask=mask)
        out = layer.cuda()(x.cuda(), attn_mask=mask.cuda())
    assert (out.cpu() - expected).abs().max() < 1e-4
