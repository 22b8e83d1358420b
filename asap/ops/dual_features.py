r"""ASAP's per-query features: what the learned map turns into the query dual ``f``.

Two feature sets (:data:`DUAL_FEATURES`), both with zero mean over each problem's valid queries (the dual's
gauge: ``f + c`` and ``g - c`` give the same plan) and 0 on padded queries:

``"sliced"`` (the paper's ASAP, :func:`sliced_dual_features`), ``2L`` per query
    per slice, the exact 1-D Kantorovich potential of the projected query against the projected keys
    (:mod:`asap.ops.kantorovich`) and the mean-field term ``x_i mean_j(y_j)``. No ``n x n`` work: a sort per
    slice.

``"sliced+lse"`` (ours), ``2L + 2`` per query
    the sliced features and the row log-sum-exps :func:`row_lse_features`, at temperatures 1 and 2:

    .. math::
        h^{(t)}_i = -t \operatorname{LSE}_j (S_{ij} / t), \qquad t \in \{1, 2\}.

    The entropic dual solves :math:`f_i = \log a_i - \operatorname{LSE}_j (S_{ij} + g_j)`, so :math:`h^{(1)}`
    is ``f`` at ``g = 0`` (the teacher's first row half-step, up to a constant). Where attention is sharp a
    row's log-sum-exp is set by its few largest scores over all ``d`` dimensions, which ``L`` one-dimensional
    projections see only in part; this is where the sliced features fail (MNIST's second layer, default profile:
    held-out plan error 0.355 with the sliced features, 0.105 with these, ridge maps, ``L = 32``).
    :math:`h^{(2)}` is a softer view of the same row, from which the linear map interpolates a correction for the
    spread of ``g``. Cost: one more fused attention pass (both temperatures in one kernel call, stacked on the
    heads), ``O(n d)`` memory: three fused passes instead of two, about twice the latency of the sliced
    features' two (``asap_lse_fused`` in :mod:`asap.bench.speed`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from asap.ops.fused import biased_lse, padded_bias
from asap.ops.kantorovich import query_potentials_1d
from asap.ops.masking import centred, masked_mean, potential_dtype

DUAL_FEATURES = ("sliced", "sliced+lse")
ROW_LSE_TEMPERATURES = (1.0, 2.0)


def num_dual_features(num_slices: int, features: str = "sliced") -> int:
    """How many features per query ``features`` gives with ``num_slices`` slices.

    >>> num_dual_features(16), num_dual_features(16, "sliced+lse")
    (32, 34)
    """
    check_dual_features(features)
    return 2 * num_slices + (len(ROW_LSE_TEMPERATURES) if features == "sliced+lse" else 0)


def check_dual_features(features: str) -> None:
    if features not in DUAL_FEATURES:
        raise ValueError(f"unknown dual features {features!r}; choose one of {DUAL_FEATURES}")


def dual_features(
    q: Tensor, k: Tensor, directions: Tensor, token_mask: Tensor | None = None, features: str = "sliced"
) -> Tensor:
    """ASAP's per-query features ``(..., n, F)`` (``F`` = :func:`num_dual_features`): the sliced features, then
    for ``"sliced+lse"`` the row log-sum-exps. ``q, k (..., n, d)``, ``directions (d, L)`` or ``(H, d, L)``,
    ``token_mask (..., n)`` (e.g. ``(B, 1|H, n)``) marks the real tokens."""
    check_dual_features(features)
    sliced = sliced_dual_features(q, k, directions, token_mask)
    if features == "sliced":
        return sliced
    return torch.cat([sliced, row_lse_features(q, k, token_mask).to(sliced.dtype)], dim=-1)


def row_lse_features(
    q: Tensor, k: Tensor, token_mask: Tensor | None = None, temperatures: tuple[float, ...] = ROW_LSE_TEMPERATURES
) -> Tensor:
    """``-t LSE_j(S_ij / t)`` over the valid keys, per temperature ``t``: ``(..., n, len(temperatures))``,
    centred over the valid queries, 0 on padded ones, in at least float32.

    One log-sum-exp pass for all temperatures (:func:`asap.ops.fused.biased_lse`): the queries
    scaled by ``1 / t`` are stacked on the heads, so ``O(n d)`` memory and no ``n x n`` tensor (the dense
    computation where no fused kernel applies, or where a gradient is needed).

    >>> q, k = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    >>> scores = q @ k.mT / 2
    >>> reference = -torch.logsumexp(scores, -1)
    >>> torch.allclose(row_lse_features(q, k)[..., 0], reference - reference.mean(-1, keepdim=True), atol=1e-5)
    True
    """
    if q.shape != k.shape or q.ndim < 2:
        raise ValueError(f"q and k must share a shape (..., n, d), got {tuple(q.shape)} and {tuple(k.shape)}")
    if not temperatures or min(temperatures) <= 0:
        raise ValueError(f"temperatures must be positive, got {temperatures}")
    *lead, seq_len, head_dim = q.shape
    problems = q[..., 0, 0].numel()
    q_flat = q.reshape(1, problems, seq_len, head_dim)  # (1, P, n, d): every leading index is one problem
    k_flat = k.reshape(1, problems, seq_len, head_dim)
    count = len(temperatures)
    stacked_q = torch.cat([q_flat / t for t in temperatures], dim=1)  # (1, T P, n, d)
    stacked_k = k_flat.repeat(1, count, 1, 1)  # (1, T P, n, d)
    zeros = torch.zeros(q.shape[:-1], dtype=potential_dtype(q.dtype), device=q.device)  # (..., n)
    tokens = None if token_mask is None else token_mask.expand(q.shape[:-1])
    key_bias = padded_bias(zeros, tokens).reshape(1, problems, seq_len).repeat(1, count, 1)  # (1, T P, n)
    lse = biased_lse(stacked_q, stacked_k, key_bias)
    scale = torch.tensor(temperatures, dtype=lse.dtype, device=lse.device)
    lse = lse.reshape(count, *lead, seq_len).movedim(0, -2) * -scale.view(-1, 1)  # (..., T, n)
    return centred(lse, None if tokens is None else tokens.unsqueeze(-2)).mT  # (..., n, T)


def sliced_dual_features(q: Tensor, k: Tensor, directions: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """ASAP's per-query features ``(..., n, 2L)``: per slice, the exact 1-D Kantorovich potential ``phi`` of the
    projected queries vs keys, and the mean-field term ``x_i * mean_j(y_j)``.

    The potentials describe the dual when attention is sharp (the unregularised limit); the mean-field term is
    the first-order dual when it is flat (``f_i ~ const - q_i . mean(k) / sqrt(d)`` for small scores, recovered
    exactly by summing over ``L = d`` orthonormal slices). The learned map interpolates between the two. Both
    have zero mean over each problem's valid queries (the dual's gauge); padded queries get 0.

    ``token_mask`` is ``(..., n)`` (e.g. ``(B, 1|H, n)``). This is ASAP's inference hot path: it projects
    straight into a slices-first ``(..., L, n)`` layout so that each 1-D problem sorts along a contiguous dim
    (:func:`asap.ops.kantorovich.query_potentials_1d`), and returns a transposed view of it. The result equals
    ``kantorovich_1d(project(q), project(k), token_mask)[0]`` and the mean-field term up to float rounding.
    q and k are not checked for finiteness here (``asap.nn.Attention`` checks its input).
    """
    if q.shape != k.shape or directions.shape[-2] != q.shape[-1]:
        raise ValueError(
            f"q and k must share a shape (..., n, d) matching directions (.., d, L), got {tuple(q.shape)}, "
            f"{tuple(k.shape)} and {tuple(directions.shape)}"
        )
    # As in asap.ops.project, transposed: directions^T q^T is (..., L, n) and contiguous (an einsum may return a
    # permuted view, which every later step would then copy or stride through)
    directions = (directions.to(q) * q.shape[-1] ** -0.25).mT  # the input's device and dtype; (.., L, d)
    x, y = torch.matmul(directions, q.mT), torch.matmul(directions, k.mT)  # (..., L, n)
    mask = None if token_mask is None else token_mask.unsqueeze(-2)  # (..., 1, n): same tokens for every slice
    phi = query_potentials_1d(x, y, mask)  # float32 at least, as x and y are below
    x, y = x.to(phi.dtype), y.to(phi.dtype)
    mean_field = centred(x * masked_mean(y, mask), mask)
    return torch.cat([phi, mean_field], dim=-2).mT.to(q.dtype)
