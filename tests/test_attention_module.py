"""asap.nn.Attention: a drop-in for timm's Attention with a switchable normaliser."""

import pytest
import torch
from conftest import make_attention, random_padding
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import VisionTransformer

from asap import ops
from asap.nn import NORMALISERS, Attention, attention_layer, key_padding_mask
from asap.ops.kantorovich import kantorovich_1d
from asap.ops.masking import pair_mask, token_mask

DIM, HEADS, N = 32, 4, 9


def make(normaliser: str, **options) -> Attention:
    return make_attention(normaliser, DIM, HEADS, qkv_bias=True, **options)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_softmax_normaliser_equals_timm_attention(qk_norm):
    norm = torch.nn.LayerNorm if qk_norm else None
    timm_layer = TimmAttention(DIM, num_heads=HEADS, qkv_bias=True, qk_norm=qk_norm, norm_layer=norm)
    ours = Attention(DIM, num_heads=HEADS, qkv_bias=True, qk_norm=qk_norm, norm_layer=norm)
    ours.load_state_dict(timm_layer.state_dict())
    x = torch.randn(3, N, DIM)
    mask = key_padding_mask(random_padding(3, N))
    assert torch.allclose(ours(x), timm_layer(x), atol=1e-6)
    assert torch.allclose(ours(x, attn_mask=mask), timm_layer(x, attn_mask=mask), atol=1e-6)
    assert torch.allclose(ours(x, is_causal=True), timm_layer(x, is_causal=True), atol=1e-6)


@pytest.mark.parametrize("normaliser", sorted(NORMALISERS))
@pytest.mark.parametrize("masked", [False, True])
def test_forward_backward(normaliser, masked):
    layer = make(normaliser)
    x = torch.randn(3, N, DIM, requires_grad=True)
    mask = key_padding_mask(random_padding(3, N)) if masked else None
    out = layer(x, attn_mask=mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("normaliser", ["sinkhorn", "sliced", "asap"])
def test_padding_does_not_change_valid_tokens(normaliser):
    """A doubly-stochastic layer on a padded batch equals the same layer on the unpadded sequences."""
    layer = make(normaliser).double()
    x = torch.randn(3, N, DIM, dtype=torch.float64)
    valid = random_padding(3, N, min_valid=3)
    out = layer(x, attn_mask=key_padding_mask(valid))
    for b in range(3):
        alone = layer(x[b : b + 1, valid[b]])
        assert torch.allclose(out[b, valid[b]], alone[0], atol=1e-10)


@pytest.mark.parametrize("normaliser", ["sinkhorn", "sliced", "asap"])
def test_attention_weights_are_doubly_stochastic_on_valid_tokens(normaliser):
    layer = make(normaliser, **({"sort_temperature": 1e-7} if normaliser == "sliced" else {})).double()
    if normaliser == "sinkhorn":
        layer.normaliser.n_iters = 300
    x = torch.randn(2, N, DIM, dtype=torch.float64)
    valid = random_padding(2, N, min_valid=4)
    weights = layer.attention_weights(x, key_padding_mask(valid))
    expected = valid[:, None, :].expand(2, HEADS, N).double()
    assert torch.allclose(weights.sum(-1), expected, atol=1e-6), "rows"
    if normaliser != "asap":  # ASAP's columns are only as exact as its calibration
        assert torch.allclose(weights.sum(-2), expected, atol=1e-6), "columns"


def test_sliced_normaliser_defaults_and_options():
    """Published ESPFormer settings by default; every option reaches the operator and shows in the repr."""
    default = make("sliced").normaliser
    assert "sort_temperature=0.001, cost_temperature=10.0, input_scale=d^-1/2, cost_reduction=sum, hard_sort=False" in (
        repr(default)
    )
    head_dim = DIM // HEADS
    q, k = (
        torch.randn(2, HEADS, N, head_dim, dtype=torch.float64),
        torch.randn(2, HEADS, N, head_dim, dtype=torch.float64),
    )
    valid = random_padding(2, N, min_valid=4)
    mask = key_padding_mask(valid)
    directions = default.directions.double()
    torch.testing.assert_close(
        default.weights(q, k, mask), ops.sliced_transport_plan(q, k, directions, mask=valid[:, None, :]), rtol=0, atol=0
    )
    old = {"sort_temperature": 1e-2, "cost_temperature": 0.1, "input_scale": head_dim**-0.25, "cost_reduction": "mean"}
    for options in (old, {"hard_sort": True}):
        normaliser = make("sliced", **options).normaliser
        assert all(f"{name}={value}" in repr(normaliser) for name, value in options.items())
        expected = ops.sliced_transport_plan(q, k, directions, mask=valid[:, None, :], **options)
        torch.testing.assert_close(normaliser.weights(q, k, mask), expected, rtol=0, atol=0)
        assert (expected - default.weights(q, k, mask)).abs().max() > 1e-3
    hard = make("sliced", hard_sort=True).double()
    weights = hard.attention_weights(torch.randn(2, N, DIM, dtype=torch.float64), mask)
    expected = valid[:, None, :].expand(2, HEADS, N).double()
    assert torch.allclose(weights.sum(-1), expected, atol=1e-12) and torch.allclose(
        weights.sum(-2), expected, atol=1e-12
    )
    with pytest.raises(ValueError, match="cost reduction"):
        make("sliced", cost_reduction="median")


def test_weights_load_unchanged_across_normalisers():
    teacher = make("sinkhorn", n_iters=5)
    state = teacher.state_dict()
    x = torch.randn(2, N, DIM)
    for name in ["softmax", "sliced"]:
        student = make(name)
        student.load_state_dict(state)  # strict: these normalisers hold no state
        assert torch.equal(student.qkv.weight, teacher.qkv.weight)
    asap_layer = Attention(DIM, num_heads=HEADS, qkv_bias=True, normaliser="asap")
    missing, unexpected = asap_layer.load_state_dict(state, strict=False)
    assert not unexpected and all(key.startswith("normaliser.") for key in missing)
    softmax_layer = make("softmax")
    softmax_layer.load_state_dict(state)
    teacher.set_normaliser(softmax_layer.normaliser)
    assert torch.allclose(teacher(x), softmax_layer(x))


def test_asap_fed_the_teacher_dual_reproduces_the_teacher_layer():
    """Step (4) of ASAP given the dual the teacher used for its last column step is the teacher itself."""
    n_iters = 4
    teacher = make("sinkhorn", n_iters=n_iters)
    student = make("asap")
    student.load_state_dict(teacher.state_dict(), strict=False)

    def teacher_dual(q, k, mask=None):
        return ops.sinkhorn(ops.attention_scores(q, k), n_iters - 1, pair_mask(mask))[0]

    student.normaliser.dual = teacher_dual
    x = torch.randn(3, N, DIM)
    mask = key_padding_mask(random_padding(3, N))
    assert torch.allclose(student(x, attn_mask=mask), teacher(x, attn_mask=mask), atol=1e-6)


def test_vision_transformer_with_each_normaliser():
    x = torch.randn(2, 1, 16, 16)
    for name in NORMALISERS:
        model = VisionTransformer(
            img_size=16,
            patch_size=4,
            in_chans=1,
            num_classes=3,
            embed_dim=DIM,
            depth=2,
            num_heads=HEADS,
            attn_layer=attention_layer(name),
        )
        if name == "asap":
            for module in model.modules():
                if isinstance(module, Attention):
                    module.normaliser.calibrated.fill_(True)
        assert model(x).shape == (2, 3)


def test_clear_errors():
    layer = make("sinkhorn")
    x = torch.randn(2, N, DIM)
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(2, N, DIM + 1))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(N, DIM))
    with pytest.raises(ValueError, match="non-finite"):
        layer(x.index_fill(1, torch.tensor([2]), float("nan")))
    with pytest.raises(ValueError, match="broadcast"):
        layer(x, attn_mask=torch.ones(2, N, dtype=torch.bool))  # (B, N) must go through key_padding_mask
    with pytest.raises(ValueError, match="broadcast"):
        layer(x, attn_mask=torch.ones(2, 1, 1, N + 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        layer(x, attn_mask=torch.ones(2, 1, 1, N, dtype=torch.int64))
    with pytest.raises(ValueError, match="0 and -inf"):
        layer(x, attn_mask=torch.randn(2, 1, 1, N))
    with pytest.raises(ValueError, match="is_causal"):
        layer(x, is_causal=True)
    with pytest.raises(ValueError, match="unknown attention normaliser"):
        Attention(DIM, num_heads=HEADS, normaliser="linear")
    with pytest.raises(RuntimeError, match="not calibrated"):
        Attention(DIM, num_heads=HEADS, normaliser="asap")(x)
    with pytest.raises(ValueError, match="padding masks only"):
        make("sliced")(x, attn_mask=torch.ones(N, N, dtype=torch.bool).tril())


def test_float_padding_mask_is_accepted():
    layer = make("sinkhorn")
    x = torch.randn(2, N, DIM)
    valid = random_padding(2, N)
    additive = torch.zeros(2, 1, 1, N).masked_fill(~valid[:, None, None, :], -torch.inf)
    assert torch.allclose(layer(x, attn_mask=additive), layer(x, attn_mask=key_padding_mask(valid)))


def reference_dual_features(q, k, directions, tokens=None):
    """sliced_dual_features written out plainly: kantorovich_1d's phi and the mean-field term, (..., n, L) each."""
    x, y = ops.project(q, directions), ops.project(k, directions)
    phi, _ = kantorovich_1d(x, y, tokens)
    weights = torch.ones_like(x[..., :1]) if tokens is None else tokens.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=-2, keepdim=True)
    mean_field = x * ((y * weights).sum(dim=-2, keepdim=True) / count)
    mean_field = (mean_field - (mean_field * weights).sum(dim=-2, keepdim=True) / count) * weights
    return torch.cat([phi, mean_field], dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_sliced_dual_features_equal_the_plain_reference(dtype, masked, per_head, grad):
    batch, heads, n, head_dim, slices = 3, 2, 33, 8, 12
    q, k = (torch.randn(batch, heads, n, head_dim, dtype=dtype, requires_grad=grad) for _ in range(2))
    directions = ops.slice_directions(head_dim, slices, dtype=dtype)
    if per_head:
        directions = torch.stack([directions, ops.slice_directions(head_dim, slices, seed=1, dtype=dtype)])
    tokens = random_padding(batch, n)[:, None, :] if masked else None  # (B, 1, n), as token_mask gives
    features = ops.sliced_dual_features(q, k, directions, tokens)  # grad=True: torch's sort, else numpy's
    assert features.shape == (batch, heads, n, 2 * slices) and features.dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(features, reference_dual_features(q, k, directions, tokens), rtol=0, atol=atol)
    if grad:
        features.square().sum().backward()
        assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def reference_row_lse_features(q, k, tokens=None, temperatures=(1.0, 2.0)):
    """row_lse_features written out on the dense scores: -t logsumexp(S / t) over valid keys, centred."""
    scores = (q.double() @ k.double().mT) / q.shape[-1] ** 0.5
    keys = torch.ones_like(scores[..., :1, :], dtype=torch.bool) if tokens is None else tokens.unsqueeze(-2)
    weights = torch.ones_like(scores[..., 0]) if tokens is None else tokens.expand(scores.shape[:-1]).double()
    columns = []
    for t in temperatures:
        lse = -t * torch.logsumexp((scores / t).masked_fill(~keys, -torch.inf), dim=-1)
        mean = (lse * weights).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True)
        columns.append((lse - mean) * weights)
    return torch.stack(columns, dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_row_lse_features_equal_the_dense_reference(dtype, masked, grad):
    batch, heads, n, head_dim = 3, 2, 33, 8
    q, k = (3 * torch.randn(batch, heads, n, head_dim, dtype=dtype) for _ in range(2))  # sharp rows
    q.requires_grad_(grad)
    tokens = random_padding(batch, n)[:, None, :] if masked else None
    features = ops.row_lse_features(q, k, tokens)  # grad: the dense path, else the fused kernel
    assert features.shape == (batch, heads, n, 2) and features.dtype == dtype
    expected = reference_row_lse_features(q.detach(), k, tokens).to(dtype)
    torch.testing.assert_close(features, expected, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-10)
    if grad:
        features.square().sum().backward()
        assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    if masked:  # padded queries get 0, and padded keys take no part (changing them changes nothing)
        assert (features.masked_select(~tokens.unsqueeze(-1).expand_as(features)) == 0).all()
        moved = torch.where(tokens.unsqueeze(-1), k, k + 100.0)
        torch.testing.assert_close(ops.row_lse_features(q.detach(), moved, tokens), features.detach())


def test_dual_features_are_the_sliced_then_the_row_lse_features():
    q, k = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)
    directions = ops.slice_directions(8, 4)
    tokens = random_padding(2, 10)[:, None, :]
    sliced = ops.dual_features(q, k, directions, tokens)
    assert torch.equal(sliced, ops.sliced_dual_features(q, k, directions, tokens))
    both = ops.dual_features(q, k, directions, tokens, "sliced+lse")
    assert both.shape[-1] == ops.num_dual_features(4, "sliced+lse") == 2 * 4 + 2
    assert torch.equal(both[..., :8], sliced) and torch.equal(both[..., 8:], ops.row_lse_features(q, k, tokens))
    with pytest.raises(ValueError, match="unknown dual features 'lse'"):
        ops.dual_features(q, k, directions, tokens, "lse")
    with pytest.raises(ValueError, match="unknown dual features"):
        Attention(DIM, num_heads=HEADS, normaliser="asap", normaliser_options={"features": "lse"})


@pytest.mark.parametrize("shape", [(3, 1, 1, N), (3, HEADS, 1, N), (1, N)])
def test_token_mask_of_a_key_padding_mask_equals_the_general_path(shape):
    mask = torch.rand(shape) < 0.6
    mask.view(-1, N)[0] = False  # a fully padded row too
    pairs = mask & mask.transpose(-1, -2)  # the same mask as an explicit pair mask takes the general path
    fast, general = token_mask(mask), token_mask(pairs)
    assert fast.shape == general.shape == (*shape[:-2], N)
    assert torch.equal(fast, general)
    assert torch.equal(general, pair_mask(mask).any(dim=-1))
    with pytest.raises(ValueError, match="padding masks only"):
        token_mask(torch.ones(*shape[:-2], N, N, dtype=torch.bool).tril())  # causal: not padding
