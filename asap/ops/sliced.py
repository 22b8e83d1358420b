r"""Expected sliced transport plans (ESPFormer, Shahbazi et al. 2025).

Per slice :math:`\theta_l`, queries and keys are projected to the line and each side is soft-sorted
(SoftSort, Prillo & Eisenschlos 2020): row ``r`` of :math:`\Pi` is a distribution over the tokens that
should hold rank ``r``,

.. math::
    \Pi_{ri} = \operatorname{softmax}_i\!\big(-(x_i - x_{(r)})^2 / \tau\big).

The lifted 1-D plan (as an attention matrix, rows summing to ~1) is
:math:`\Gamma_l = \Pi_q^\top \Pi_k`, a soft version of the sorted matching. The slices are averaged
with weights from their transport cost in the ambient space:

.. math::
    w = \operatorname{softmax}_l\!\Big(-t \cdot \tfrac1n \textstyle\sum_{ij} \Gamma_{l,ij}
        \lVert \tilde q_i - \tilde k_j \rVert\Big), \qquad A = \sum_l w_l \Gamma_l .

Departures from the published code, and why: queries and keys are scaled by ``d^(-1/4)`` each (not
``d^(-1/2)``) so that their products are this project's scores ``S = QK^T/sqrt(d)``; slices may be any
fixed directions (the published choice, the coordinate axes, is the default of
:func:`asap.ops.slicing.slice_directions`). As published, the method needs equal numbers of valid
queries and keys; it materialises ``L x n x n`` tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asap.ops.masking import check_finite, masked_fill_value
from asap.ops.slicing import project


def soft_sort(values: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """Soft permutation matrices ``(..., n_ranks, n_items)`` of ``values (..., n)``, ranks ascending.

    With ``mask (..., n)``, only valid items are ranked: ranks ``>= n_valid`` are rows of zeros and padded
    items get no mass. As ``temperature -> 0`` each row tends to the one-hot of the item holding that rank.
    """
    if temperature <= 0:
        raise ValueError(f"soft-sort temperature must be > 0, got {temperature}")
    if mask is None:
        sorted_values = values.sort(dim=-1).values
    else:
        sorted_values = values.masked_fill(~mask, torch.inf).sort(dim=-1).values
        rank_valid = torch.arange(values.shape[-1], device=values.device) < mask.sum(dim=-1, keepdim=True)
        sorted_values = sorted_values.masked_fill(~rank_valid, 0.0)
    logits = -(values.unsqueeze(-2) - sorted_values.unsqueeze(-1)).square() / temperature
    if mask is None:
        return logits.softmax(dim=-1)
    logits = logits.masked_fill(~mask.unsqueeze(-2), masked_fill_value(logits.dtype))
    return logits.softmax(dim=-1) * rank_valid.unsqueeze(-1).to(logits.dtype)


def sliced_transport_plan(
    q: Tensor,
    k: Tensor,
    directions: Tensor,
    sort_temperature: float = 1e-2,
    cost_temperature: float = 0.1,
    mask: Tensor | None = None,
) -> Tensor:
    """ESPFormer attention matrix ``(..., n, n)``: the cost-weighted average of soft-sorted 1-D plans.

    Args:
        q, k: ``(..., n, d)`` queries and keys (equal ``n``).
        directions: ``(d, L)`` or per-head ``(H, d, L)`` slice directions.
        sort_temperature: soft-sort temperature ``tau``.
        cost_temperature: ``t`` in the slice weights ``softmax(-t * cost_l)``.
        mask: optional boolean ``(..., n)`` of valid tokens, shared by queries and keys.
    """
    if q.shape != k.shape:
        raise ValueError(
            f"sliced transport needs equal numbers of queries and keys, got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    check_finite("q", q)
    check_finite("k", k)
    x = project(q, directions).transpose(-1, -2)  # (..., L, n)
    y = project(k, directions).transpose(-1, -2)
    slice_mask = None if mask is None else mask.unsqueeze(-2)
    plans = soft_sort(x, sort_temperature, slice_mask).transpose(-1, -2) @ soft_sort(y, sort_temperature, slice_mask)

    scale = q.shape[-1] ** -0.25
    distances = torch.cdist(q * scale, k * scale)  # (..., n, n)
    n_valid = q.shape[-2] if mask is None else mask.sum(dim=-1, keepdim=True).to(q.dtype)
    costs = torch.einsum("...lij,...ij->...l", plans, distances) / n_valid
    weights = torch.softmax(-cost_temperature * costs, dim=-1)
    return torch.einsum("...l,...lij->...ij", weights, plans)
