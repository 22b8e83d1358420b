r"""Entropic optimal transport between queries and keys, in the log domain.

Problem (cost :math:`C = -S`, :math:`\varepsilon = 1`, uniform marginals :math:`a = 1/n`, :math:`b = 1/m`
over the valid tokens):

.. math::
    P = \exp(S + f \oplus g), \qquad P\mathbf{1} = a, \qquad P^\top\mathbf{1} = b.

The two half-steps are entropic c-transforms, one per side:

.. math::
    g_j = \log b_j - \operatorname{LSE}_i (S_{ij} + f_i) \quad\text{(columns exact)}, \qquad
    f_i = \log a_i - \operatorname{LSE}_j (S_{ij} + g_j) \quad\text{(rows exact)}.

All functions are batched over any leading dimensions and differentiable. Potentials are computed and returned
in at least float32 (the dtype policy of :mod:`asap.ops`); plans and attention come back in the scores' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asap.ops.masking import Marginals, apply_mask, as_pair_mask, check_finite, potential_dtype, zero_invalid


def _check_scores(scores: Tensor) -> None:
    if scores.ndim < 2:
        raise ValueError(f"scores must have shape (..., n, m), got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    check_finite("scores", scores)


def column_c_transform(masked_scores: Tensor, f: Tensor, marginals: Marginals) -> Tensor:
    """``g_j = log b_j - LSE_i(S_ij + f_i)``: the key-side potential that makes every column exact."""
    lse = torch.logsumexp(masked_scores + f.unsqueeze(-1), dim=-2)
    return zero_invalid(marginals.log_b - lse, marginals.col_valid)


def row_c_transform(masked_scores: Tensor, g: Tensor, marginals: Marginals) -> Tensor:
    """``f_i = log a_i - LSE_j(S_ij + g_j)``: the query-side potential that makes every row exact."""
    lse = torch.logsumexp(masked_scores + g.unsqueeze(-2), dim=-1)
    return zero_invalid(marginals.log_a - lse, marginals.row_valid)


def sinkhorn(scores: Tensor, n_iters: int, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Log-domain Sinkhorn potentials ``(f, g)`` of the plan ``P = exp(S + f[..., :, None] + g[..., None, :])``.

    Starts from a row normalisation (``g = 0``), then ``n_iters`` times a column normalisation followed by
    a row normalisation, so every row is exact (sums to ``1/n``) and ``n_iters=0`` gives ``softmax(S)/n``.

    Args:
        scores: ``S`` of shape ``(..., n, m)``.
        n_iters: number of (column, row) normalisation pairs after the first row normalisation.
        mask: boolean key-padding mask ``(..., m)`` or pair mask ``(..., n, m)``, ``True`` = valid.
            Masked pairs get exactly zero mass (through :func:`transport_plan`); marginals are uniform over
            the valid queries (rows with a valid pair) and valid keys. Potentials of padded tokens are 0.

    Returns:
        ``f`` of shape ``(..., n)`` and ``g`` of shape ``(..., m)``. Their gauge (``f + c``, ``g - c``) is the
        one the iteration produces.
    """
    _check_scores(scores)
    if n_iters < 0:
        raise ValueError(f"n_iters must be >= 0, got {n_iters}")
    scores = scores.to(potential_dtype(scores.dtype))
    mask = as_pair_mask(mask, scores)
    marginals = Marginals(scores, mask)
    masked_scores = apply_mask(scores, mask)
    g = scores.new_zeros(scores.shape[:-2] + scores.shape[-1:])
    f = row_c_transform(masked_scores, g, marginals)
    for _ in range(n_iters):
        g = column_c_transform(masked_scores, f, marginals)
        f = row_c_transform(masked_scores, g, marginals)
    return f, g


def teacher_query_dual(scores: Tensor, n_iters: int, mask: Tensor | None = None) -> Tensor:
    """The query dual ``f (..., n)`` of a Sinkhorn teacher's *last column step* (the ``f`` of ``n_iters - 1``
    iterations), with zero mean over each problem's valid queries (0 on padded ones): ASAP's calibration target.

    Its c-transform is exactly the teacher's ``g``, hence the teacher's attention ``softmax_j(S_ij + g_j)``;
    duals are defined up to a constant per problem (``f + c``, ``g - c`` give the same plan), hence the gauge.
    """
    if n_iters < 1:
        raise ValueError("a teacher with n_iters=0 is softmax attention: there is no dual to calibrate on")
    f, _ = sinkhorn(scores, n_iters - 1, mask)
    valid = torch.ones_like(f, dtype=torch.bool) if mask is None else as_pair_mask(mask, scores).any(-1).expand_as(f)
    mean = (f * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)
    return (f - mean) * valid


def entropic_c_transform(
    scores: Tensor, f: Tensor, mask: Tensor | None = None, two_sided: bool | Tensor = True
) -> tuple[Tensor, Tensor]:
    """Reconstruct a plan from a query-side potential ``f``.

    ``g`` is the entropic c-transform of ``f`` over queries (columns exact). If ``two_sided``, ``f2`` is the
    c-transform of ``g`` over keys (rows exact), else ``f2 = f``. The plan is ``P = exp(S + f2 ⊕ g)``.
    ``two_sided`` may also be a boolean tensor broadcastable to ``f.shape[:-1]`` (e.g. ``(H,)``: a side per
    head), choosing per problem.
    Fed the query-side potential that a Sinkhorn run used for its last column step, this reproduces that
    run exactly; fed a converged dual, it reproduces the converged plan.
    """
    _check_scores(scores)
    if f.shape != scores.shape[:-1]:
        raise ValueError(f"f must have shape {tuple(scores.shape[:-1])} (scores without m), got {tuple(f.shape)}")
    check_finite("f", f)
    scores, f = scores.to(potential_dtype(scores.dtype)), f.to(potential_dtype(scores.dtype))
    mask = as_pair_mask(mask, scores)
    marginals = Marginals(scores, mask)
    masked_scores = apply_mask(scores, mask)
    g = column_c_transform(masked_scores, f, marginals)
    if isinstance(two_sided, Tensor):
        both = row_c_transform(masked_scores, g, marginals), zero_invalid(f, marginals.row_valid)
        return torch.where(two_sided.to(f.device).unsqueeze(-1), *both), g
    f2 = row_c_transform(masked_scores, g, marginals) if two_sided else zero_invalid(f, marginals.row_valid)
    return f2, g


def transport_plan(scores: Tensor, f: Tensor, g: Tensor, mask: Tensor | None = None) -> Tensor:
    """``P = exp(S + f ⊕ g)``, with exactly zero mass on masked pairs (summed in the potentials' dtype)."""
    work = scores.to(torch.promote_types(potential_dtype(scores.dtype), f.dtype))
    masked_scores = apply_mask(work, as_pair_mask(mask, scores))
    return torch.exp(masked_scores + f.unsqueeze(-1) + g.unsqueeze(-2)).to(scores.dtype)


def log_attention_from_potentials(scores: Tensor, f: Tensor, g: Tensor, mask: Tensor | None = None) -> Tensor:
    """``log A = S + f ⊕ g + log n`` in the potentials' dtype, ``-inf`` on masked pairs: the log-domain attention,
    finite where a sharp row's entries underflow in :func:`attention_from_potentials` (for divergences)."""
    work = scores.to(torch.promote_types(potential_dtype(scores.dtype), f.dtype))
    mask = as_pair_mask(mask, scores)
    log_n = -Marginals(work, mask).log_a
    log_attention = work + (f + log_n).unsqueeze(-1) + g.unsqueeze(-2)
    return log_attention if mask is None else log_attention.masked_fill(~mask, -torch.inf)


def attention_from_potentials(scores: Tensor, f: Tensor, g: Tensor, mask: Tensor | None = None) -> Tensor:
    """Attention ``A = n * P`` (``n`` valid queries), so that an exact row sums to 1."""
    return log_attention_from_potentials(scores, f, g, mask).exp().to(scores.dtype)
