r"""Expected sliced transport plans (ESPFormer, Shahbazi et al. 2025), with the published settings by default.

ESPFormer's attention layer, as published (the defaults here reproduce it): queries and keys are scaled by
``s = d^(-1/2)`` (``d`` = head dim), :math:`\tilde q = s\,q,\ \tilde k = s\,k`. Each slice :math:`\theta_l`
(the coordinate axes by default, :func:`asap.ops.projections.slice_directions`) projects them to the line,
:math:`x = \tilde q\,\theta_l,\ y = \tilde k\,\theta_l`, and each side is soft-sorted with SoftSort
(Prillo & Eisenschlos 2020) at temperature :math:`\tau = 10^{-3}`: row ``r`` of :math:`\Pi` is a
distribution over the tokens that should hold rank ``r``,

.. math::
    \Pi_{ri} = \operatorname{softmax}_i\!\big(-(x_i - x_{(r)})^2 / \tau\big).

The lifted 1-D plan (as an attention matrix, rows summing to ~1) is :math:`\Gamma_l = \Pi_q^\top \Pi_k`,
a soft version of the sorted matching. Each slice's cost is its plan's transport cost in the ambient space,
summed over all ``n^2`` pairs (unsquared Euclidean distance, no division by ``n``), and the slices are
mixed by a softmax at cost temperature :math:`t = 10` (ESPFormer's class default ``t = 0.1`` is overridden
by its attention layer), i.e. a near-hard choice of the cheapest slice:

.. math::
    c_l = \textstyle\sum_{ij} \Gamma_{l,ij} \lVert \tilde q_i - \tilde k_j \rVert, \qquad
    w = \operatorname{softmax}_l(-t\, c), \qquad A = \sum_l w_l \Gamma_l .

``hard_sort=True`` is ESPFormer's hard-sort variant: :math:`\Gamma_l` is the exact 1-D monotone matching
(the permutation matrix sending the ``r``-th smallest query to the ``r``-th smallest key), no temperature;
it is the ``tau -> 0`` limit of the soft plan, and only the slice weights carry gradients.

Departures from the published code:

* slices may be any fixed directions (``(d, L)`` or per head ``(H, d, L)``), not only the axes;
* a token mask ``(..., n)`` (padding) is supported: only valid tokens are sorted and matched, padded
  queries and keys get no mass; with ``cost_reduction="mean"`` the cost is divided by the number of
  valid queries;
* every published constant is a keyword argument. This project's earlier defaults are recovered with
  ``input_scale=d^(-1/4)`` (so that ``x . y`` summed over ``L = d`` orthonormal slices is the score
  ``q.k/sqrt(d)``), ``sort_temperature=1e-2``, ``cost_temperature=0.1``, ``cost_reduction="mean"``;
  in the published scaling that is ``tau = 1e-2 / sqrt(d)``, ``t = 0.1 d^(1/4) / n`` -- nearly uniform
  slice weights, a different method. (Scaling the inputs by ``a`` is the same as dividing ``tau`` by
  ``a^2`` and multiplying ``t`` by ``a``.)

As published, the method needs equal numbers of (valid) queries and keys, and it materialises
``L x n x n`` tensors.

References: Shahbazi et al., "ESPFormer: Doubly-Stochastic Attention with Expected Sliced Transport Plans",
2025; Prillo & Eisenschlos, "SoftSort: A Continuous Relaxation for the argsort Operator", ICML 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asap.ops.masking import check_finite, masked_fill_value, potential_dtype

COST_REDUCTIONS = ("sum", "mean")


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


def hard_sorted_plan(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """The exact 1-D monotone matching ``(..., n, n)`` of ``x`` to ``y`` (both ``(..., n)``), as attention.

    Entry ``(i, j)`` is 1 when query ``i`` and key ``j`` hold the same rank among the valid tokens, else 0.
    With ``mask (..., n)`` padded tokens are sorted last and their rows and columns are 0.
    """
    if mask is not None:
        x = x.masked_fill(~mask, torch.inf)
        y = y.masked_fill(~mask, torch.inf)
    rank_of_query = x.argsort(dim=-1).argsort(dim=-1)  # (..., n): the rank of each query
    partner = y.argsort(dim=-1).gather(-1, rank_of_query)  # the key holding that rank
    ones = torch.ones_like(x) if mask is None else mask.expand_as(x).to(x.dtype)
    return torch.zeros(*x.shape, x.shape[-1], dtype=x.dtype, device=x.device).scatter_(
        -1, partner.unsqueeze(-1), ones.unsqueeze(-1)
    )


def _coordinates(x: Tensor, directions: Tensor) -> Tensor:
    """Coordinates ``(..., L, n)`` of ``x (..., n, d)``; per-head directions ``(H, d, L)`` need ``x (..., H, n, d)``."""
    if directions.ndim == 3:
        return torch.einsum("...hnd,hdl->...hln", x, directions.to(x))
    return (x @ directions.to(x)).transpose(-1, -2)


def sliced_transport_plan(
    q: Tensor,
    k: Tensor,
    directions: Tensor,
    sort_temperature: float = 1e-3,
    cost_temperature: float = 10.0,
    mask: Tensor | None = None,
    *,
    input_scale: float | None = None,
    cost_reduction: str = "sum",
    hard_sort: bool = False,
) -> Tensor:
    """ESPFormer attention matrix ``(..., n, n)``: the cost-weighted average of sorted 1-D plans.

    The defaults are ESPFormer's published attention settings (see the module docstring).

    Args:
        q, k: ``(..., n, d)`` queries and keys (equal ``n``).
        directions: ``(d, L)`` or per-head ``(H, d, L)`` slice directions.
        sort_temperature: SoftSort temperature ``tau`` on the scaled coordinates (unused with ``hard_sort``).
        cost_temperature: ``t`` in the slice weights ``softmax(-t * cost_l)``.
        mask: optional boolean ``(..., n)`` of valid tokens, shared by queries and keys.
        input_scale: factor applied to ``q`` and ``k`` before projection and distances; ``None`` is
            ``d^(-1/2)`` (published); ``d^(-1/4)`` was this project's earlier convention.
        cost_reduction: ``"sum"`` over all pairs (published) or ``"mean"``: the sum divided by the number of
            valid queries.
        hard_sort: exact sorting per slice (ESPFormer's hard-sort variant) instead of SoftSort.
    """
    if q.shape != k.shape:
        raise ValueError(
            f"sliced transport needs equal numbers of queries and keys, got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    if cost_reduction not in COST_REDUCTIONS:
        raise ValueError(f"unknown cost reduction {cost_reduction!r}; choose one of {COST_REDUCTIONS}")
    check_finite("q", q)
    check_finite("k", k)
    out_dtype = q.dtype
    scale = q.shape[-1] ** -0.5 if input_scale is None else input_scale
    # SoftSort at tau = 1e-3 resolves coordinate gaps far below half precision's: everything in float32 at least.
    q, k = q.to(potential_dtype(q.dtype)) * scale, k.to(potential_dtype(k.dtype)) * scale
    x, y = _coordinates(q, directions), _coordinates(k, directions)  # (..., L, n)
    slice_mask = None if mask is None else mask.unsqueeze(-2)
    if hard_sort:
        plans = hard_sorted_plan(x, y, slice_mask)
    else:
        plans = soft_sort(x, sort_temperature, slice_mask).transpose(-1, -2) @ soft_sort(
            y, sort_temperature, slice_mask
        )

    # one computation at every n: cdist's default switches to the matrix-product form above 25 points, which
    # made a compiled layer recompile when n crossed 25
    distances = torch.cdist(q, k, compute_mode="use_mm_for_euclid_dist")  # (..., n, n)
    costs = torch.einsum("...lij,...ij->...l", plans, distances)
    if cost_reduction == "mean":
        costs = costs / (q.shape[-2] if mask is None else mask.sum(dim=-1, keepdim=True).to(q.dtype))
    weights = torch.softmax(-cost_temperature * costs, dim=-1)
    return torch.einsum("...l,...lij->...ij", weights, plans).to(out_dtype)
