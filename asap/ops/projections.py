"""Slice directions and the projection of queries and keys onto them."""

from __future__ import annotations

import torch
from torch import Tensor


def slice_directions(
    dim: int, num_slices: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Fixed unit directions ``(dim, num_slices)``.

    ``num_slices=None`` gives the coordinate axes (the identity, ``L = dim``), as ESPFormer slices.
    Otherwise seeded random directions, orthonormal in blocks of ``dim`` (a Haar-random rotation per block),
    so ``L = dim`` slices recover ``q . k`` exactly: ``sum_l (q.t_l)(k.t_l) = q . k``.
    """
    if num_slices is None:
        return torch.eye(dim, dtype=dtype)
    if num_slices < 1:
        raise ValueError(f"num_slices must be >= 1, got {num_slices}")
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-num_slices // dim)):
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
        blocks.append(q * r.diagonal().sign())
    return torch.cat(blocks, dim=1)[:, :num_slices].to(dtype)


def project(x: Tensor, directions: Tensor) -> Tensor:
    """Coordinates ``x . t_l / d^(1/4)`` of ``x (..., n, d)`` on directions ``(d, L)`` or per-head ``(H, d, L)``.

    The ``d^(-1/4)`` on each side makes the 1-D costs add up to the attention scores: with orthonormal
    directions, ``sum_l project(q)_l * project(k)_l = q . k / sqrt(d)``.
    """
    scale = x.shape[-1] ** -0.25
    if directions.ndim == 3:  # one set per head: x is (..., H, n, d)
        return torch.einsum("...hnd,hdl->...hnl", x, directions.to(x)) * scale
    return (x @ directions.to(x)) * scale
