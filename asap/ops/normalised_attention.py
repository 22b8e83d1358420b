"""Attention outputs and attention matrices for each normaliser, as pure functions of q, k, v.

Shapes: ``q, k, v`` are ``(..., n, d)``; scores ``S = q k^T / sqrt(d)`` are ``(..., n, n)``. Masks are
boolean (``True`` = valid): ``pair_mask`` broadcasts to the scores, ``token_mask (..., n)`` marks valid
tokens where a method only supports padding (sliced transport, the slicing step of ASAP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from asap.ops.entropic import attention_from_potentials, entropic_c_transform, sinkhorn
from asap.ops.flash_sinkhorn import flash_sinkhorn_attention
from asap.ops.sinkhorn_backward import lean_sinkhorn_attention_matrix
from asap.ops.sliced_transport import sliced_transport_plan


def attention_scores(q: Tensor, k: Tensor) -> Tensor:
    """``S = q k^T / sqrt(d)``."""
    return (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Row softmax attention through torch's fused ``scaled_dot_product_attention`` (SDPA mask semantics)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def softmax_attention_matrix(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """The softmax attention matrix, ``softmax_j(S_ij)`` over valid keys (fully masked rows are 0)."""
    return sinkhorn_attention_matrix(q, k, n_iters=0, mask=mask)


def sinkhorn_attention_matrix(q: Tensor, k: Tensor, n_iters: int, mask: Tensor | None = None) -> Tensor:
    """Sinkformer attention ``n * P`` after ``n_iters`` Sinkhorn iterations (rows exact)."""
    scores = attention_scores(q, k)
    f, g = sinkhorn(scores, n_iters, mask)
    return attention_from_potentials(scores, f, g, mask)


SINKHORN_IMPLS = ("auto", "flash", "lean", "unrolled")
FLASH_SINKHORN_MIN_LEN = 2048  # on CPU, at every head dim: see sinkhorn_impl
# (largest head dim, shortest n) from which flash runs at small head dims, at inference and in training
FLASH_SINKHORN_SMALL_HEADS = {"inference": (32, 1024), "training": (16, 1024)}


def sinkhorn_impl(seq_len: int, device: torch.device | str, head_dim: int = 64, training: bool = False) -> str:
    """The Sinkhorn implementation that ``impl="auto"`` runs: ``flash`` on CUDA and, on CPU, from
    :data:`FLASH_SINKHORN_MIN_LEN` tokens on, or from n = 1024 at head dims up to 32 (inference) or 16 (training:
    :data:`FLASH_SINKHORN_SMALL_HEADS`); ``lean`` below.

    Measured side by side on the 2-core CPU (B=2, T=3 and 10, the reference and the trained models' H and d;
    ``asap bench speed``'s ``sinkhorn_auto`` rows keep checking it at every committed shape): at inference flash
    overtakes lean from n = 1024 at d <= 32 (its half-steps are kernel passes that the values' multiply hardly
    slows at small d), but at d = 64 only from n = 2048 on one thread; a training step's flash backward is four
    more passes per iteration, so there it pays from n = 1024 at d = 16 only, and elsewhere from 2048, where
    lean's ``n x n`` buffers (B=2, H=4: 128 MB each) start to weigh. On CUDA the lean teacher's ``n x n`` traffic
    dominates and the fused kernels are fast, so flash runs at every length (not measured: no GPU was lent when
    this rule was set).
    """
    if torch.device(device).type == "cuda" or seq_len >= FLASH_SINKHORN_MIN_LEN:
        return "flash"
    largest_head_dim, shortest = FLASH_SINKHORN_SMALL_HEADS["training" if training else "inference"]
    return "flash" if head_dim <= largest_head_dim and seq_len >= shortest else "lean"


ASAP_IMPLS = ("auto", "dense", "fused")


def asap_impl(seq_len: int, device: torch.device | str) -> str:
    """The ASAP implementation that ``impl="auto"`` runs: ``fused``, at every length and on every device.

    Measured side by side on the 2-core CPU (1 thread, B=2, the reference and the trained models' H, d and L,
    n = 17 to 2048): the fused path was never slower than the dense one beyond timing noise, even at n = 17,
    where both are bound by per-operation overhead (``asap bench speed``'s ``asap_auto`` rows keep checking it).
    The dense path stays the reference, and what attention dropout in training needs.
    """
    return "fused"


def sinkhorn_attention(
    q: Tensor, k: Tensor, v: Tensor, n_iters: int, token_mask: Tensor | None = None, impl: str = "auto"
) -> Tensor:
    """Sinkformer attention output ``(n P) v`` after ``n_iters`` iterations, by any implementation, all with the
    same value and the same (unrolled) gradients:

    * ``flash``: fused attention passes, ``O(n d)`` memory forward and backward
      (:func:`asap.ops.flash_sinkhorn_attention`);
    * ``lean``: the ``n x n`` matrix with an exact backward that saves ``O(n)`` per iteration
      (:func:`asap.ops.lean_sinkhorn_attention_matrix`);
    * ``unrolled``: plain autograd through the iterations (the reference, :func:`sinkhorn_attention_matrix`);
    * ``auto``: :func:`sinkhorn_impl` of the length, device, head dim and whether a gradient is needed.

    ``q, k, v`` are ``(B, H, n, d)``; ``token_mask (B, 1|H, n)`` marks real tokens (self-attention padding).
    """
    if impl == "auto":
        training = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
        impl = sinkhorn_impl(q.shape[-2], q.device, q.shape[-1], training)
    if impl == "flash":
        return flash_sinkhorn_attention(q, k, v, n_iters, token_mask)
    pairs = None if token_mask is None else token_mask.unsqueeze(-1) & token_mask.unsqueeze(-2)
    if impl == "lean":
        return lean_sinkhorn_attention_matrix(attention_scores(q, k), n_iters, pairs) @ v
    if impl == "unrolled":
        return sinkhorn_attention_matrix(q, k, n_iters, pairs) @ v
    raise ValueError(f"unknown Sinkhorn implementation {impl!r}; choose one of {SINKHORN_IMPLS}")


def sliced_attention_matrix(
    q: Tensor,
    k: Tensor,
    directions: Tensor,
    sort_temperature: float = 1e-3,
    cost_temperature: float = 10.0,
    token_mask: Tensor | None = None,
    *,
    input_scale: float | None = None,
    cost_reduction: str = "sum",
    hard_sort: bool = False,
) -> Tensor:
    """ESPFormer attention, published settings by default (:func:`asap.ops.sliced_transport.sliced_transport_plan`)."""
    return sliced_transport_plan(
        q,
        k,
        directions,
        sort_temperature,
        cost_temperature,
        token_mask,
        input_scale=input_scale,
        cost_reduction=cost_reduction,
        hard_sort=hard_sort,
    )


def c_transform_attention_matrix(
    q: Tensor, k: Tensor, f: Tensor, mask: Tensor | None = None, two_sided: bool | Tensor = True
) -> Tensor:
    """ASAP attention rebuilt from a query-side dual ``f``: ``softmax_j(S_ij + g_j)`` when two-sided,
    ``n * exp(S_ij + f_i + g_j)`` (columns exact, rows approximate) when one-sided; ``g`` is the
    entropic c-transform of ``f`` over queries. ``two_sided`` may be a boolean tensor broadcastable to
    ``f.shape[:-1]`` (a side per head: ``(H,)``)."""
    scores = attention_scores(q, k)
    f2, g = entropic_c_transform(scores, f, mask, two_sided)
    return attention_from_potentials(scores, f2, g, mask)


def weighted_values(weights: Tensor, v: Tensor, dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """``A v``, with attention dropout on ``A`` in training."""
    return F.dropout(weights, dropout_p, training) @ v
