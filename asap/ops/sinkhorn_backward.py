r"""Sinkformer attention with a lean exact backward: O(n) saved per iteration instead of O(n^2).

Forward (as :func:`asap.ops.sinkhorn`): ``f_0 = row(S, 0)``, then ``g_t = col(S, f_{t-1})``,
``f_t = row(S, g_t)`` for ``t = 1..T``; the attention is the row softmax :math:`A = \mathrm{softmax}_j(S + g_T)`.
Autograd through this loop keeps every iteration's ``n x n`` temporaries. Here only the potentials are
kept and each half-step's plan is recomputed in backward, which walks the same chain in reverse:

.. math::
    \bar S \mathrel{-}= P^{c} \odot \bar g, \quad \bar f = -P^{c} \bar g
    \qquad\text{(column step, } P^{c} = \mathrm{softmax}_i(S + f)\text{)},

.. math::
    \bar S \mathrel{-}= \bar f \odot P^{r}, \quad \bar g = -{P^{r}}^\top \bar f
    \qquad\text{(row step, } P^{r} = \mathrm{softmax}_j(S + g)\text{)}.

The gradient is the unrolled one (not an implicit fixed-point approximation); tests check it against
autograd through :func:`asap.ops.sinkhorn`. Work is done in place in one ``n x n`` buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from asap.ops.masking import Marginals, apply_mask, as_pair_mask, potential_dtype, zero_invalid


def _logsumexp_(work: Tensor, dim: int) -> Tensor:
    """Log-sum-exp of ``work`` along ``dim`` (keepdim); overwrites ``work`` with ``exp(work - max)``."""
    peak = work.amax(dim=dim, keepdim=True)
    work.sub_(peak).exp_()
    return work.sum(dim=dim, keepdim=True).log_().add_(peak)


def _softmax_(work: Tensor, dim: int) -> Tensor:
    """In-place softmax of ``work`` along ``dim``."""
    _logsumexp_(work, dim)
    return work.div_(work.sum(dim=dim, keepdim=True))


class _SinkhornAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, masked_scores: Tensor, n_iters: int, marginals: Marginals) -> Tensor:
        work = torch.empty_like(masked_scores)
        g = masked_scores.new_zeros(masked_scores.shape[:-2] + masked_scores.shape[-1:])
        steps = []  # (g seen by the row step, f it produced): O(n) each
        for _ in range(n_iters):
            torch.add(masked_scores, g.unsqueeze(-2), out=work)
            f = zero_invalid(marginals.log_a - _logsumexp_(work, -1).squeeze(-1), marginals.row_valid)
            steps += [g, f]
            torch.add(masked_scores, f.unsqueeze(-1), out=work)
            g = zero_invalid(marginals.log_b - _logsumexp_(work, -2).squeeze(-2), marginals.col_valid)
        attention = torch.add(masked_scores, g.unsqueeze(-2), out=work)
        _softmax_(attention, -1)
        if marginals.row_valid is not None:
            attention.mul_(marginals.row_valid.unsqueeze(-1))
        ctx.marginals = marginals
        ctx.save_for_backward(masked_scores, attention, *steps)
        return attention

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_attention: Tensor) -> tuple[Tensor, None, None]:
        masked_scores, attention, *steps = ctx.saved_tensors
        marginals: Marginals = ctx.marginals
        # Row softmax A = softmax_j(S + g_T): the gradient of its input goes to S and to g_T.
        grad_scores = grad_attention * attention
        grad_scores.sub_(attention * grad_scores.sum(dim=-1, keepdim=True))
        grad_g = grad_scores.sum(dim=-2)
        work = torch.empty_like(masked_scores)
        for g, f in zip(reversed(steps[0::2]), reversed(steps[1::2]), strict=True):
            # column step g_t = col(S, f_{t-1})
            torch.add(masked_scores, f.unsqueeze(-1), out=work)
            _softmax_(work, -2)
            work.mul_(zero_invalid(grad_g, marginals.col_valid).unsqueeze(-2))
            grad_scores.sub_(work)
            grad_f = -work.sum(dim=-1)
            # row step f_{t-1} = row(S, g_{t-1})
            torch.add(masked_scores, g.unsqueeze(-2), out=work)
            _softmax_(work, -1)
            work.mul_(zero_invalid(grad_f, marginals.row_valid).unsqueeze(-1))
            grad_scores.sub_(work)
            grad_g = -work.sum(dim=-2)
        return grad_scores, None, None


def lean_sinkhorn_attention_matrix(scores: Tensor, n_iters: int, mask: Tensor | None = None) -> Tensor:
    """Sinkformer attention ``n * P`` after ``n_iters`` iterations, with the lean exact backward.

    Same value as :func:`asap.ops.sinkhorn_attention_matrix` on the scores; gradients equal autograd through the
    unrolled iterations, at the memory of two ``n x n`` buffers instead of one per half-step.
    """
    mask = as_pair_mask(mask, scores)
    work = scores.to(potential_dtype(scores.dtype))  # log-sum-exps in at least float32 (asap.ops' dtype policy)
    return _SinkhornAttention.apply(apply_mask(work, mask), n_iters, Marginals(work, mask)).to(scores.dtype)
