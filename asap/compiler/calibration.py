r"""Calibration data: each query's features (:mod:`asap.ops.dual_features`) and the teacher's query dual (the
target).

The target is the query-side dual ``f`` that the teacher's *last column step* used
(:func:`asap.ops.teacher_query_dual`): its c-transform is exactly the teacher's ``g`` and hence the teacher's
attention ``softmax_j(S_ij + g_j)`` (for a converged teacher this is the converged dual). Duals are defined
up to a constant per problem (``f + c``, ``g - c`` give the same plan), so both the targets and the features
(``kantorovich_1d``'s gauge) have zero mean over each problem's valid queries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from asap import ops
from asap.compiler.capture import AttentionInputs
from asap.ops.masking import pair_mask, token_mask, valid_tokens


def batch_valid_tokens(inputs: AttentionInputs) -> Tensor:
    """``(B, N)`` booleans of the real (unpadded) tokens of a batch."""
    batch, _, seq_len, _ = inputs.q.shape
    tokens = valid_tokens(inputs.mask, (batch, seq_len), inputs.q.device)
    return tokens.any(dim=1) if tokens.ndim == 3 else tokens  # (B, H, N) per head -> (B, N)


def batch_features(batches: list[AttentionInputs], directions: Tensor, features: str = "sliced") -> list[Tensor]:
    """Per batch, the dual features ``(B, H, N, F)`` of every query (0 on padded ones;
    :func:`asap.ops.dual_features`)."""
    return [ops.dual_features(b.q, b.k, directions, token_mask(b.mask), features) for b in batches]


def calibration_pairs(batches: list[AttentionInputs], features: list[Tensor], n_iters: int) -> tuple[Tensor, Tensor]:
    """Features ``(H, T, F)`` and targets ``(H, T)`` over the ``T`` real queries of ``batches``, whose
    :func:`batch_features` are ``features``."""
    pooled_features, targets = [], []
    for inputs, phi in zip(batches, features, strict=True):
        valid = batch_valid_tokens(inputs)
        pooled_features.append(phi.permute(0, 2, 1, 3)[valid])  # (T_b, H, F)
        dual = ops.teacher_query_dual(ops.attention_scores(inputs.q, inputs.k), n_iters, pair_mask(inputs.mask))
        targets.append(dual.permute(0, 2, 1)[valid])  # (T_b, H)
    return torch.cat(pooled_features).transpose(0, 1), torch.cat(targets).T


def principal_directions(batches: list[AttentionInputs], num_slices: int, seed: int = 0) -> Tensor:
    """Per head, the top principal directions ``(H, d, L)`` of the pooled real queries and keys
    (completed by seeded random orthonormal directions when ``L > d``)."""
    vectors = []
    for inputs in batches:
        valid = batch_valid_tokens(inputs)
        vectors.append(torch.cat([inputs.q.permute(0, 2, 1, 3)[valid], inputs.k.permute(0, 2, 1, 3)[valid]]))
    pooled = torch.cat(vectors).transpose(0, 1).double()  # (H, T, d)
    centred = pooled - pooled.mean(dim=1, keepdim=True)
    _, eigenvectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)  # ascending eigenvalues
    principal = eigenvectors.flip(-1)  # (H, d, d), largest first
    head_dim = principal.shape[-1]
    if num_slices > head_dim:
        extra = ops.slice_directions(head_dim, num_slices - head_dim, seed, dtype=torch.float64)
        principal = torch.cat([principal, extra.expand(principal.shape[0], -1, -1)], dim=-1)
    return principal[..., :num_slices].to(batches[0].q.dtype)
