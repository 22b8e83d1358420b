"""Masks and uniform marginals: the package's one home for mask conventions.

A mask is boolean, ``True`` marks a token (or a query/key pair) that takes part. Three places take masks:

* the layer (``asap.nn.Attention.forward``): an SDPA-style ``attn_mask`` broadcasting to ``(B, H, N, N)``,
  boolean or additive float 0/-inf (:func:`attention_mask_as_bool`); padding is
  :func:`key_padding_mask` ``(B, 1, 1, N)``, which in self-attention pads the matching queries too;
* the normalisers: :func:`pair_mask` expands such a key-padding mask to pairs ``(..., N, N)``;
  :func:`token_mask` gives the valid tokens ``(..., N)`` where a method supports padding only (sliced
  transport, ASAP's slicing); :func:`valid_tokens` is the same with "every token" for no mask;
* the operators (``asap.ops``): a key-padding mask ``(..., m)`` or a pair mask ``(..., n, m)``, told apart by
  their number of dimensions (:func:`as_pair_mask`).

Masked score entries are filled with a large *finite* negative number rather than ``-inf``: every
log-sum-exp stays finite, so no ``-inf - (-inf)`` NaN reaches the forward pass or the gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_DATA_CHECKS = True


def checking_data() -> bool:
    """Whether checks that read the data (finite inputs, non-empty masks, calibrated layers) run.

    They run in eager mode unless switched off with :func:`data_checks`; inside ``torch.compile`` they never run:
    each reads a tensor on the host, which is a device sync and a graph break. Run a model once eagerly to
    validate its inputs, then compile it.
    """
    return _DATA_CHECKS and not torch.compiler.is_compiling()


@contextmanager
def data_checks(enabled: bool) -> Iterator[None]:
    """Switch the data checks (:func:`checking_data`) on or off within a block, e.g. off for eager GPU timing."""
    global _DATA_CHECKS
    previous, _DATA_CHECKS = _DATA_CHECKS, enabled
    try:
        yield
    finally:
        _DATA_CHECKS = previous


def potential_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of potentials, log-sum-exps and cumulative sums for inputs of ``dtype``: at least float32.

    Sinkhorn potentials are of order ``log n + |S|`` and cancel in ``exp(S + f + g)``: in bfloat16 (8 bits of
    mantissa) a potential of 10 is off by 0.03, which is a 3% error in the plan. See :mod:`asap.ops`.
    """
    return torch.promote_types(dtype, torch.float32)


def log_uniform(token_mask: Tensor | None, size: int, dtype: torch.dtype) -> Tensor | float:
    """``log(1/n)`` of uniform marginals over the valid tokens: a float without a mask, else ``(..., 1)`` from a
    token mask ``(..., size)``."""
    if token_mask is None:
        return -math.log(size)
    return -token_mask.sum(-1, keepdim=True).to(dtype).log()


def masked_fill_value(dtype: torch.dtype) -> float:
    """A finite stand-in for ``-inf``: ``exp`` of it is exactly 0, yet adding a potential keeps it finite."""
    return torch.finfo(dtype).min / 4


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a ``ValueError`` naming ``tensor`` if it holds NaN or inf (when :func:`checking_data`)."""
    if checking_data() and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def as_pair_mask(mask: Tensor | None, scores: Tensor) -> Tensor | None:
    """Broadcast a key-padding mask ``(..., m)`` or a pair mask ``(..., n, m)`` to ``scores.shape``.

    The two forms are told apart by their number of dimensions (``scores.ndim - 1`` or ``scores.ndim``),
    never by their sizes, so a batch size that happens to equal ``n`` cannot be misread.
    """
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = keep), got dtype {mask.dtype}")
    n, m = scores.shape[-2:]
    if mask.ndim == scores.ndim - 1:
        mask = mask.unsqueeze(-2)
    elif mask.ndim != scores.ndim:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} fits neither a key-padding mask (..., {m}) nor a pair mask "
            f"(..., {n}, {m}) for scores of shape {tuple(scores.shape)}"
        )
    try:
        return mask.expand(scores.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to scores of shape {tuple(scores.shape)}"
        ) from None


class Marginals:
    """Uniform marginals over the valid queries (rows) and keys (columns) of a (masked) problem.

    ``n_rows``/``n_cols`` count the valid tokens, shaped ``(..., 1)`` (plain ints without a mask);
    ``log_a = -log n_rows`` and ``log_b = -log n_cols`` broadcast against potentials ``(..., n)``/``(..., m)``;
    ``row_valid``/``col_valid`` are ``None`` when every query/key is valid.
    """

    def __init__(self, scores: Tensor, mask: Tensor | None) -> None:
        if mask is None:
            self.row_valid = self.col_valid = None
            self.n_rows, self.n_cols = scores.shape[-2:]
            self.log_a, self.log_b = -math.log(self.n_rows), -math.log(self.n_cols)
            return
        self.row_valid = mask.any(dim=-1)
        self.col_valid = mask.any(dim=-2)
        self.n_rows = self.row_valid.sum(dim=-1, keepdim=True)
        self.n_cols = self.col_valid.sum(dim=-1, keepdim=True)
        if checking_data() and (self.n_rows == 0).any():
            raise ValueError("mask leaves a problem with no valid query/key pair")
        self.log_a = -self.n_rows.to(scores.dtype).log()
        self.log_b = -self.n_cols.to(scores.dtype).log()


def apply_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Scores with masked entries set to :func:`masked_fill_value` (a no-op without a mask)."""
    if mask is None:
        return scores
    return scores.masked_fill(~mask, masked_fill_value(scores.dtype))


def zero_invalid(potential: Tensor, valid: Tensor | None) -> Tensor:
    """Potentials of padded tokens are fixed to 0 (their value is arbitrary; 0 keeps everything finite)."""
    return potential if valid is None else potential.masked_fill(~valid, 0.0)


def masked_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """The mean of ``values (..., n)`` over the valid entries of the last dim (``weights``: 1 valid, 0 padded,
    broadcastable; ``None``: all valid), keeping that dim."""
    if weights is None:
        return values.mean(dim=-1, keepdim=True)
    weights = weights.to(values.dtype)
    return (values * weights).sum(dim=-1, keepdim=True) / weights.sum(dim=-1, keepdim=True)


def centred(values: Tensor, weights: Tensor | None) -> Tensor:
    """``values (..., n)`` minus their :func:`masked_mean`, and 0 on padded entries: a potential in the zero-mean
    gauge over each problem's valid tokens."""
    shifted = values - masked_mean(values, weights)
    return shifted if weights is None else shifted * weights.to(values.dtype)


def key_padding_mask(valid: Tensor) -> Tensor:
    """``(B, N)`` booleans (``True`` = real token) -> the SDPA-style mask ``(B, 1, 1, N)`` this module takes."""
    if valid.dtype != torch.bool or valid.ndim != 2:
        raise ValueError(f"valid must be a boolean (B, N) tensor, got {valid.dtype} {tuple(valid.shape)}")
    return valid[:, None, None, :]


def attention_mask_as_bool(attn_mask: Tensor | None, batch: int, num_heads: int, seq_len: int) -> Tensor | None:
    """Check an SDPA-style mask against ``(B, H, N, N)`` and return it as booleans (``True`` = attend)."""
    if attn_mask is None:
        return None
    if attn_mask.is_floating_point():
        if checking_data() and not ((attn_mask == 0) | (attn_mask == -torch.inf)).all():
            raise ValueError("additive float masks must hold only 0 and -inf; pass a boolean mask instead")
        attn_mask = attn_mask == 0
    elif attn_mask.dtype != torch.bool:
        raise TypeError(f"attn_mask must be boolean or float (0/-inf), got {attn_mask.dtype}")
    target = (batch, num_heads, seq_len, seq_len)
    if attn_mask.ndim > 4 or attn_mask.ndim < 2:
        raise ValueError(f"attn_mask must broadcast to (B, H, N, N) = {target}, got shape {tuple(attn_mask.shape)}")
    try:
        broadcast = torch.broadcast_shapes(attn_mask.shape, target)
    except RuntimeError:
        broadcast = None
    if broadcast != target:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to (B, H, N, N) = {target}; "
            "for padding use asap.nn.key_padding_mask(valid) -> (B, 1, 1, N)"
        )
    return attn_mask


def pair_mask(mask: Tensor | None) -> Tensor | None:
    """Self-attention pair mask: a key-padding mask ``(..., 1, N)`` pads the matching queries too."""
    if mask is None or mask.shape[-2] != 1:
        return mask
    return mask & mask.transpose(-1, -2)


def token_mask(mask: Tensor | None) -> Tensor | None:
    """Valid tokens ``(..., N)`` of a padding mask; rejects masks that are not pure padding."""
    if mask is None:
        return None
    if mask.dtype == torch.bool and mask.ndim >= 2 and mask.shape[-2] == 1:
        return mask[..., 0, :]  # a key-padding mask (..., 1, N) pads the matching queries: valid by construction
    pairs = pair_mask(mask)
    tokens = pairs.any(dim=-1)
    if checking_data() and not torch.equal(pairs, tokens.unsqueeze(-1) & tokens.unsqueeze(-2)):
        raise ValueError("this normaliser supports padding masks only (valid queries x valid keys)")
    return tokens


def valid_tokens(mask: Tensor | None, shape: tuple[int, ...], device: torch.device | None = None) -> Tensor:
    """Booleans of the real tokens, of ``shape`` (``(..., N)``, every token) without a mask, else
    :func:`token_mask` of ``mask``."""
    tokens = token_mask(mask)
    return torch.ones(shape, dtype=torch.bool, device=device) if tokens is None else tokens
