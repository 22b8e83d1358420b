r"""Exact Kantorovich potentials of one-dimensional transport problems, by sorting.

For uniform measures on :math:`x_1..x_n` and :math:`y_1..y_n` with cost :math:`c(x, y) = -xy`, the
monotone matching :math:`x_{(k)} \leftrightarrow y_{(k)}` is optimal (``-xy`` equals the squared distance
up to terms separable in x and y). With sorted values, the convex function

.. math::
    u_1 = 0, \qquad u_{k+1} = u_k + y_{(k)} (x_{(k+1)} - x_{(k)})

has subgradient :math:`y_{(k)}` at :math:`x_{(k)}`, and :math:`\varphi = -u`,
:math:`\psi_{(k)} = u_k - x_{(k)} y_{(k)}` (minus :math:`u` and minus its convex conjugate) are feasible,
:math:`\varphi_i + \psi_j \le -x_i y_j`, and tight on the matching, hence optimal. Tied values receive
equal potentials, so the potentials are functions of the values, whatever order the sort breaks ties in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from asap.ops.masking import centred, check_finite, checking_data, potential_dtype


def kantorovich_1d(x: Tensor, y: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Exact 1-D Kantorovich potentials, one problem per slice, in O(n log n).

    Args:
        x: source points ``(..., n, L)``; each of the ``L`` slices (last dim) is its own problem.
        y: target points ``(..., n, L)``, same shape as ``x``.
        mask: optional boolean ``(..., n)`` (broadcastable) marking the valid points of *both* x and y (self-attention
            padding); each problem is then between the valid points only.

    Returns:
        ``(phi, psi)``, each ``(..., n, L)``: ``phi_i + psi_j <= -x_i y_j`` and
        ``mean(phi) + mean(psi)`` equals the optimal cost ``(1/n) sum_k -x_(k) y_(k)``.
        Gauge: ``phi`` has zero mean over the valid points, so ``mean(psi)`` is the optimal cost.
        Padded points get potential 0. In at least float32 (the cumulative sums run over ``n``).
    """
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must share a shape (..., n, L), got {tuple(x.shape)} and {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)
    x, y = x.to(potential_dtype(x.dtype)), y.to(potential_dtype(y.dtype))
    if mask is not None:
        try:
            mask = mask.expand(x.shape[:-1])
        except RuntimeError:
            mask = None
        if mask is None or mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean and broadcast to {tuple(x.shape[:-1])}")
        if checking_data() and not mask.any(dim=-1).all():
            raise ValueError("mask leaves a problem with no valid point")
        # Padded points become copies of the largest valid value: they sort last and add zero increments.
        valid = mask.unsqueeze(-1)
        x = torch.where(valid, x, x.masked_fill(~valid, -torch.inf).amax(dim=-2, keepdim=True))
        y = torch.where(valid, y, y.masked_fill(~valid, -torch.inf).amax(dim=-2, keepdim=True))

    xs, x_order = x.sort(dim=-2)
    ys, y_order = y.sort(dim=-2)
    increments = ys[..., :-1, :] * xs.diff(dim=-2)
    u = torch.cat([torch.zeros_like(xs[..., :1, :]), increments.cumsum(dim=-2)], dim=-2)
    phi = torch.empty_like(x).scatter(-2, x_order, -u)
    psi = torch.empty_like(y).scatter(-2, y_order, u - xs * ys)

    if mask is None:
        shift = phi.mean(dim=-2, keepdim=True)
        return phi - shift, psi + shift
    weights = valid.to(x.dtype)
    shift = (phi * weights).sum(dim=-2, keepdim=True) / weights.sum(dim=-2, keepdim=True)
    return (phi - shift) * weights, (psi + shift) * weights


def query_potentials_1d(x: Tensor, y: Tensor, mask: Tensor | None = None, numpy_sort: bool | None = None) -> Tensor:
    """The source potential ``phi`` of :func:`kantorovich_1d` alone, with the points on the *last* dim.

    Computes exactly what ``kantorovich_1d(x.mT, y.mT, mask)[0].mT`` computes (same gauge: zero mean over the
    valid points, 0 on padded points; same padding: padded points become copies of the largest valid value, so
    they sort last and add zero increments), up to float rounding. It exists for ASAP's per-query features,
    the inference hot path: one sort per problem along the contiguous last dim, no ``psi`` (ASAP never uses
    it, and it costs a second scatter), and no finiteness checks (inputs are checked at the module boundary).
    Only the sorted *values* of ``y`` are needed, and the order of ``x`` only to scatter ``phi`` back.

    Args:
        x: source points ``(..., n)``; every leading index is its own problem.
        y: target points ``(..., n)``, same shape as ``x``.
        mask: optional boolean, broadcastable to ``x.shape``, marking the valid points of both x and y.
        numpy_sort: sort with numpy (True) or torch (False); ``None`` picks numpy where it can (CPU,
            no gradient needed through x or y). torch's CPU sort is much slower than numpy's for these shapes:
            for a ``(64, 1024)`` float32 tensor, single-threaded, ``torch.sort`` takes ~3.8 ms where
            ``np.sort`` takes ~0.3 ms and ``np.argsort`` ~1.2-1.8 ms. Elsewhere, or when autograd must flow, torch.

    Returns:
        ``phi (..., n)`` in at least float32 (the cumulative sum runs over ``n``).
    """
    if x.shape != y.shape or x.ndim < 1:
        raise ValueError(f"x and y must share a shape (..., n), got {tuple(x.shape)} and {tuple(y.shape)}")
    numpy_ok = (
        x.device.type == "cpu"
        and not torch.compiler.is_compiling()  # numpy is opaque to the compiler
        and x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)  # upcast below
        and not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad))
    )
    if numpy_sort is None:
        numpy_sort = numpy_ok
    elif numpy_sort and not numpy_ok:
        raise ValueError("numpy_sort needs CPU float32/float64 inputs and no gradient through them")
    x, y = x.to(potential_dtype(x.dtype)), y.to(potential_dtype(y.dtype))  # the cumulative sum runs over n
    weights = None
    if mask is not None:
        try:
            broadcasts = torch.broadcast_shapes(mask.shape, x.shape) == x.shape
        except RuntimeError:
            broadcasts = False
        if mask.dtype != torch.bool or not broadcasts:
            raise ValueError(f"mask must be boolean and broadcast to {tuple(x.shape)}")
        if checking_data() and not mask.any(dim=-1).all():  # on the unexpanded mask: cheap
            raise ValueError("mask leaves a problem with no valid point")
        # Padded points become copies of the largest valid value: they sort last and add zero increments.
        x = torch.where(mask, x, x.masked_fill(~mask, -torch.inf).amax(dim=-1, keepdim=True))
        y = torch.where(mask, y, y.masked_fill(~mask, -torch.inf).amax(dim=-1, keepdim=True))
        weights = mask.to(x.dtype)

    if numpy_sort:
        x_order = _numpy_argsort(x.detach().contiguous())  # any order of ties: tied values get equal potentials
        xs = x.gather(-1, x_order)
        ys = torch.from_numpy(np.sort(y.detach().contiguous().numpy(), axis=-1))
    else:
        xs, x_order = x.sort(dim=-1)
        ys = y.sort(dim=-1).values
    increments = ys[..., :-1] * xs.diff(dim=-1)
    neg_u = torch.cat([torch.zeros_like(xs[..., :1]), increments.cumsum(dim=-1).neg_()], dim=-1)
    phi = torch.empty_like(xs).scatter_(-1, x_order, neg_u)
    return centred(phi, weights)


def _numpy_argsort(x: Tensor) -> Tensor:
    """Indices sorting the contiguous CPU float tensor ``x`` along its last dim, by numpy (not stable).

    float32: one in-place ``np.sort`` of int64 keys ``(order-preserving integer image of x) << 32 | index``, whose
    low 32 bits are then the order; numpy sorts int64 values much faster than it argsorts float32, and its
    vectorised bitwise operations build the keys in a fraction of what torch's take (the timings are
    ``asap bench speed``'s ``dual_features`` rows). ``-0.0`` sorts before ``0.0``, which is harmless here (equal
    values, zero increment). float64: ``np.argsort``.
    """
    if x.dtype != torch.float32:
        return torch.from_numpy(np.argsort(x.numpy(), axis=-1))
    bits = x.numpy().view(np.int32)
    key = np.bitwise_xor(bits, np.bitwise_and(np.right_shift(bits, 31), 0x7FFFFFFF))  # negatives: flip all but sign
    packed = np.left_shift(key.astype(np.int64), 32)
    packed |= np.arange(x.shape[-1], dtype=np.int64)
    packed.sort(axis=-1)
    packed &= 0xFFFFFFFF
    return torch.from_numpy(packed)
