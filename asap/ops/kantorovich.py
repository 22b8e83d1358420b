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

import torch
from torch import Tensor

from asap.ops.masking import check_finite


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
        Padded points get potential 0.
    """
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"x and y must share a shape (..., n, L), got {tuple(x.shape)} and {tuple(y.shape)}")
    check_finite("x", x)
    check_finite("y", y)
    if mask is not None:
        try:
            mask = mask.expand(x.shape[:-1])
        except RuntimeError:
            mask = None
        if mask is None or mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean and broadcast to {tuple(x.shape[:-1])}")
        if not mask.any(dim=-1).all():
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
