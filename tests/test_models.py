"""Each model runs forward/backward with each attention variant; padding is respected."""

import pytest
import torch

from asap.models import create_model

VARIANTS = {"softmax": {}, "sinkhorn": {"n_iters": 2}, "sliced": {"num_slices": 3}}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_vit_forward_backward(variant):
    model = create_model(
        "vit",
        image_size=12,
        in_chans=1,
        num_classes=5,
        attention=variant,
        attention_options=VARIANTS[variant],
        patch_size=4,
        embed_dim=16,
        depth=2,
        num_heads=2,
    )
    images = torch.randn(3, 1, 12, 12)
    logits = model(images)
    assert logits.shape == (3, 5)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def make_text(variant: str, **kwargs) -> torch.nn.Module:
    return create_model(
        "text_encoder",
        vocab_size=30,
        max_len=12,
        num_classes=3,
        attention=variant,
        attention_options=VARIANTS[variant],
        embed_dim=16,
        depth=2,
        num_heads=2,
        **kwargs,
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_text_encoder_forward_backward_with_padding(variant):
    model = make_text(variant)
    tokens = torch.randint(1, 30, (3, 10))
    tokens[1, 6:] = 0
    logits = model(tokens)
    assert logits.shape == (3, 3)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("pool", ["mean", "cls", "first"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_text_encoder_ignores_padding(variant, pool):
    """Logits of a padded sequence equal those of the same sequence alone, for every variant and pooling."""
    model = make_text(variant, pool=pool).double().eval()
    tokens = torch.randint(1, 30, (2, 10))
    tokens[1, 7:] = 0
    batched = model(tokens)
    alone = model(tokens[1:, :7])
    assert torch.allclose(batched[1], alone[0], atol=1e-10)


def test_text_encoder_errors():
    model = make_text("softmax")
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randint(1, 30, (2, 13)))
    with pytest.raises(ValueError, match="non-padding"):
        model(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="long"):
        model(torch.randn(2, 5))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet")
    with pytest.raises(ValueError, match="pool"):
        make_text("softmax", pool="max")


def test_text_encoder_cls_pooling_reads_the_class_token():
    """With ``pool="cls"`` the logits depend on the class token (a constant shift would vanish in LayerNorm)."""
    model = make_text("softmax", pool="cls").eval()
    tokens = torch.randint(1, 30, (2, 12))
    before = model(tokens)
    with torch.no_grad():
        model.cls_token.add_(torch.randn_like(model.cls_token))
    assert not torch.allclose(before, model(tokens))
