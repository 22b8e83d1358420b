"""Multi-head self-attention with a pluggable normaliser, a drop-in for timm's ``Attention``."""

from __future__ import annotations

import copy
from typing import Any

import torch
from timm.layers import Attention as TimmAttention
from torch import Tensor, nn

from asap.nn.normalisers import NORMALISERS, Normaliser, create_normaliser
from asap.ops.masking import attention_mask_as_bool, check_finite


class Attention(TimmAttention):
    """timm's multi-head self-attention with the attention normaliser chosen by name.

    Same constructor and ``forward(x, attn_mask=None, is_causal=False)`` as ``timm.layers.Attention``, and
    the same parameters (``qkv``, ``q_norm``, ``k_norm``, ``norm``, ``gate``, ``proj``), so state dicts move
    between this module and timm's, and between normalisers. Extra keyword-only arguments:

    Args:
        normaliser: ``softmax``, ``sinkhorn``, ``sliced`` or ``asap``.
        normaliser_options: options of that normaliser, e.g. ``{"n_iters": 5}`` (see ``asap.nn.normalisers``).
    """

    def __init__(
        self, *args: Any, normaliser: str = "softmax", normaliser_options: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.normaliser: Normaliser = create_normaliser(
            normaliser, self.num_heads, self.head_dim, **(normaliser_options or {})
        )

    def set_normaliser(self, normaliser: Normaliser) -> None:
        """Swap the normaliser in place; the projections (the trained weights) are untouched."""
        self.normaliser = normaliser.to(self.qkv.weight.device)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.qkv.in_features:
            raise ValueError(f"x must have shape (B, N, {self.qkv.in_features}), got {tuple(x.shape)}")
        check_finite("attention input x", x)
        batch, seq_len, _ = x.shape
        mask = attention_mask_as_bool(attn_mask, batch, self.num_heads, seq_len)
        if is_causal:
            if self.normaliser.name != "softmax":
                raise ValueError(f"is_causal is not supported by the {self.normaliser.name!r} normaliser")
            if mask is not None:
                raise ValueError("pass either attn_mask or is_causal, not both")
            mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device).tril()

        gate = self.gate(x).sigmoid() if self.gate is not None else None
        q, k, v = self.qkv(x).reshape(batch, seq_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        x = self.normaliser(q, k, v, mask, self.attn_drop.p)

        x = x.transpose(1, 2).reshape(batch, seq_len, self.attn_dim)
        x = self.norm(x)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))

    def attention_weights(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """The attention matrices ``(B, H, N, N)`` this layer applies to ``x`` (for analysis, not speed)."""
        batch, seq_len, _ = x.shape
        mask = attention_mask_as_bool(attn_mask, batch, self.num_heads, seq_len)
        q, k, _ = self.qkv(x).reshape(batch, seq_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.normaliser.weights(self.q_norm(q), self.k_norm(k), mask)


def attention_layer(normaliser: str, **options: Any) -> type[Attention]:
    """An :class:`Attention` subclass with the normaliser bound, for timm's ``attn_layer=`` argument
    (timm needs a class, not a partial): ``VisionTransformer(attn_layer=attention_layer("sinkhorn", n_iters=5))``.
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown attention normaliser {normaliser!r}; choose one of {sorted(NORMALISERS)}")

    class ConfiguredAttention(Attention):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, normaliser=normaliser, normaliser_options=options, **kwargs)

    ConfiguredAttention.__name__ = ConfiguredAttention.__qualname__ = f"{normaliser.capitalize()}Attention"
    return ConfiguredAttention


def attention_layers(model: nn.Module) -> dict[str, Attention]:
    """Every :class:`Attention` layer of ``model``, by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, Attention)}


def with_normaliser(model: nn.Module, name: str, **options: Any) -> nn.Module:
    """A copy of ``model`` whose every attention layer uses the normaliser ``name`` (weights unchanged)."""
    swapped = copy.deepcopy(model)
    for layer in attention_layers(swapped).values():
        layer.set_normaliser(create_normaliser(name, layer.num_heads, layer.head_dim, **options))
    return swapped


def convert(model: nn.Module, normaliser: str = "sinkhorn", inplace: bool = False, **options: Any) -> nn.Module:
    """Give every timm ``Attention`` of ``model`` (any timm model, e.g. ``timm.create_model("vit_tiny_patch16_224")``)
    the normaliser ``normaliser`` with ``options``, keeping every weight: each such layer becomes an
    :class:`Attention` (timm's module with a pluggable normaliser, the same parameters and buffers). Layers that
    are already :class:`Attention` get the new normaliser. On a copy unless ``inplace``.

    With ``normaliser="softmax"`` the model computes what it computed before; with ``"sinkhorn"`` it is a
    Sinkformer, which :func:`asap.compiler` can compile once trained. A subclass of timm's ``Attention`` that adds
    parameters or changes ``forward`` is refused, since its own computation would be lost.
    """
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown attention normaliser {normaliser!r}; choose one of {sorted(NORMALISERS)}")
    converted = model if inplace else copy.deepcopy(model)
    layers = [module for module in converted.modules() if isinstance(module, TimmAttention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no timm Attention layer to convert")
    for module in layers:
        if not isinstance(module, Attention):
            mro = type(module).__mro__
            below_timm = mro[: mro.index(TimmAttention)]  # the module's own class and bases under timm's
            overridden = sorted({name for cls in below_timm for name in ("__init__", "forward") if name in vars(cls)})
            if overridden:
                raise ValueError(
                    f"{type(module).__name__} subclasses timm's Attention and overrides {overridden}: not converted"
                )
            module.__class__ = Attention  # the same parameters and attributes; asap's forward
        module.set_normaliser(create_normaliser(normaliser, module.num_heads, module.head_dim, **options))
    return converted
