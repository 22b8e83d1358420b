"""Vision: timm's VisionTransformer with asap's attention layer plugged in."""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer

from asap.nn import attention_layer


def vit_classifier(
    image_size: int,
    in_chans: int,
    num_classes: int,
    attention: str = "softmax",
    attention_options: dict[str, Any] | None = None,
    patch_size: int = 4,
    embed_dim: int = 64,
    depth: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    global_pool: str = "token",
) -> VisionTransformer:
    """A small ViT (class token, learned positions) whose every attention uses ``attention``."""
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        global_pool=global_pool,
        drop_rate=dropout,
        proj_drop_rate=dropout,
        attn_layer=attention_layer(attention, **(attention_options or {})),
    )
