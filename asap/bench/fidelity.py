"""Plan fidelity: each variant's attention matrices against the teacher's, on the teacher's own layer inputs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from asap.nn import attention_layers
from asap.ops.masking import valid_tokens


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_batches: int
) -> dict[str, list[tuple[Tensor, Tensor | None]]]:
    """Per attention layer, the ``(x, attn_mask)`` it received on each of ``num_batches`` batches."""
    layers = attention_layers(model)
    captured: dict[str, list] = {name: [] for name in layers}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured[name].append((args[0].detach(), kwargs.get("attn_mask", args[1] if len(args) > 1 else None)))

        return hook

    device = next(model.parameters()).device
    handles = [layer.register_forward_pre_hook(recorder(name), with_kwargs=True) for name, layer in layers.items()]
    try:
        for index, (inputs, _) in enumerate(batches):
            if index == num_batches:
                break
            model(inputs.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _marginal_errors(weights: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Largest deviation of a valid row / column sum from 1."""
    row_error = ((weights.sum(-1) - 1).abs() * valid).amax()
    col_error = ((weights.sum(-2) - 1).abs() * valid).amax()
    return row_error, col_error


@torch.no_grad()
def plan_fidelity(
    variant: nn.Module, teacher: nn.Module, inputs: dict[str, list[tuple[Tensor, Tensor | None]]]
) -> dict[str, float]:
    """Relative Frobenius error of the attention matrices vs the teacher (pooled over layers and batches) and
    the worst row / column marginal error, with every layer fed the teacher's inputs. Only the rows of real
    queries count: a padded query's row is never read (the teacher zeroes it, softmax does not)."""
    teacher_layers, variant_layers = attention_layers(teacher), attention_layers(variant)
    error = norm = 0.0
    row_error = col_error = 0.0
    for name, batches in inputs.items():
        for x, mask in batches:
            reference = teacher_layers[name].attention_weights(x, mask)
            weights = variant_layers[name].attention_weights(x, mask)
            valid = valid_tokens(mask, weights.shape[:-1], weights.device)
            reference, weights = reference * valid.unsqueeze(-1), weights * valid.unsqueeze(-1)
            error += (weights - reference).square().sum().item()
            norm += reference.square().sum().item()
            rows, cols = _marginal_errors(weights, valid)
            row_error, col_error = max(row_error, rows.item()), max(col_error, cols.item())
    return {"plan_rel_error": (error / norm) ** 0.5, "row_marginal_error": row_error, "col_marginal_error": col_error}
