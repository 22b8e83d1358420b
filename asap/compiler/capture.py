"""Record what each attention layer's normaliser sees (q, k, mask) while a model runs on real batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asap.nn import Attention, Sinkhorn, attention_layers


@dataclass
class AttentionInputs:
    """One batch's inputs to a normaliser: ``q, k (B, H, N, d)`` and its mask (``None`` or ``(B, 1|H, 1|N, N)``)."""

    q: Tensor
    k: Tensor
    mask: Tensor | None


def sinkhorn_layers(model: nn.Module) -> dict[str, Attention]:
    """The attention layers of ``model`` whose normaliser is Sinkhorn (the teacher's), by module name."""
    return {name: layer for name, layer in attention_layers(model).items() if isinstance(layer.normaliser, Sinkhorn)}


@torch.no_grad()
def capture_attention_inputs(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], layers: dict[str, Attention], num_batches: int
) -> dict[str, list[AttentionInputs]]:
    """Run ``model`` (in eval mode) on ``num_batches`` batches ``(inputs, labels)`` and keep, per layer, the
    normaliser inputs of every batch."""
    captured: dict[str, list[AttentionInputs]] = {name: [] for name in layers}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            q, k, _, mask = args[:4]
            captured[name].append(AttentionInputs(q.detach().clone(), k.detach().clone(), mask))

        return hook

    handles = [layer.normaliser.register_forward_pre_hook(recorder(name)) for name, layer in layers.items()]
    was_training = model.training
    model.eval()
    try:
        seen = 0
        for inputs, _ in batches:
            if seen == num_batches:
                break
            model(inputs.to(next(model.parameters()).device))
            seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen < num_batches:
        raise ValueError(f"calibration needs {num_batches} batches, the loader gave {seen}")
    return captured
