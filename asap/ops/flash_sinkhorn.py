r"""Flash Sinkhorn: Sinkformer attention in ``O(n d)`` memory, forward and backward, on fused attention kernels.

Every Sinkhorn half-step is a log-sum-exp of biased scores (:mod:`asap.ops.entropic`),

.. math::
    f_i = \log a - \operatorname{LSE}_j (S_{ij} + g_j) \quad\text{(row step)}, \qquad
    g_j = \log b - \operatorname{LSE}_i (S_{ij} + f_i) \quad\text{(column step)},

and a fused attention kernel that returns its row log-sum-exp computes one without the ``n x m`` matrix
(:func:`asap.ops.fused.biased_attention`: on CPU the bias is a broadcast additive mask, on CUDA it rides in an
extra head dimension); the column step is the same pass with the roles of queries and keys swapped. With
``g_0 = 0`` the forward is ``f_0, g_1, f_1, ..., g_T`` and the output ``softmax_j(S_{ij} + g_{T,j}) v_j``
(rows exact, so ``f_T`` is not needed): ``2T + 1`` passes, as in FlashSinkhorn (arXiv 2602.03067), which
does this for point-cloud transport. Only the last needs the values: the ``2T`` half-steps are log-sum-exp-only
passes (:func:`asap.ops.fused.biased_lse`, blocked or fused as measured).

Backward without ``n x m`` memory: only the potentials (``O(T n)``) are saved, and the chain is walked in
reverse (the gradient is the unrolled one, as in :mod:`asap.ops.sinkhorn_backward`). Write
:math:`R^t = \operatorname{softmax}_j(S + g_t)` and :math:`C^t = \operatorname{softmax}_i(S + f_t)` for the row
and column distributions, and :math:`s = d^{-1/2}` (:math:`S_{ij} = s\, q_i \cdot k_j`).

* Output pass: torch's fused attention backward gives :math:`\bar q, \bar k, \bar v`, and
  :math:`\bar g_T` comes from the bias dimension of the keys or from one more pass
  (:func:`_output_pass_backward`).
* Column step :math:`g_{t+1} = \mathrm{col}(f_t)`, with :math:`u = -\bar g_{t+1}`: :math:`\bar S_{ij} = u_j
  C^t_{ij}`. The key side, :math:`\bar k_j \mathrel{+}= s\, u_j \sum_i C^t_{ij} q_i`, is one pass over
  :math:`C^t` with the queries as values. The query side needs :math:`\sum_j u_j C^t_{ij} [k_j, 1]`; since
  :math:`C^t_{ij} = \exp(S_{ij} + f_{t,i} + g_{t+1,j} - \log b)`, it is
  :math:`\exp(f_{t,i} - \log b + \Lambda_i)\, \mathrm{out}_i`, where ``out`` and :math:`\Lambda` are the output
  and log-sum-exp of one pass over :math:`R^{t+1}` with values :math:`[u_j k_j, u_j]`. Its first part adds to
  :math:`\bar q` (times :math:`s`), its last column is :math:`\bar f_t`.
* Row step :math:`f_t = \mathrm{row}(g_t)`, with :math:`w = -\bar f_t`: :math:`\bar S_{ij} = w_i R^t_{ij}`,
  symmetrically: :math:`\bar q_i \mathrel{+}= s\, w_i \sum_j R^t_{ij} k_j` (a pass over :math:`R^t` with the keys
  as values), and :math:`\sum_i w_i R^t_{ij} [q_i, 1] = \exp(g_{t,j} - \log a + \Lambda_j)\, \mathrm{out}_j`
  from a pass over :math:`C^t` with values :math:`[w_i q_i, w_i]`, giving :math:`\bar k` and :math:`\bar g_t`.

The prefactors are row (column) sums of a column- (row-) normalised plan, so they stay between 0 and ``n``.
Backward cost: the output pass's fused backward plus four passes per iteration. Memory: ``O((n + m) d)`` at
any ``T``; the ``n x m`` scores are never held, so training runs at lengths where the lean teacher
(:mod:`asap.ops.sinkhorn_backward`) runs out of memory.

Padding (self-attention, ``token_mask``): padded keys get a bias of :data:`asap.ops.fused.NO_MASS` (zero weight), padded
queries likewise in the column passes, so a padded token neither sends nor receives mass; padded queries get a
zero output, and the marginals are uniform over the valid tokens, as in :func:`asap.ops.sinkhorn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from asap.ops.fused import BIAS_IN_HEAD_DIM, bias_mask, biased_attention, biased_lse, fused_inputs, padded_bias
from asap.ops.masking import checking_data, log_uniform, potential_dtype, zero_invalid


def _weighted(x: Tensor, weights: Tensor) -> Tensor:
    """Values ``[w_i x_i, w_i]`` ``(B, H, n, d + 1)``: a pass's output then carries a gradient and a potential's
    gradient at once."""
    weights = weights.unsqueeze(-1).to(x.dtype)
    return torch.cat([weights * x, weights], dim=-1)


def _output_pass_backward(
    q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor, row_lse: Tensor, grad_out: Tensor, token_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Gradients of ``out = softmax_j(S_ij + g_j) v_j`` with respect to ``q, k, v`` and ``g``, by torch's fused
    attention backward (which recomputes the forward blockwise).

    On CPU (:data:`asap.ops.fused.BIAS_IN_HEAD_DIM`) the bias is an additive mask ``(B, H, 1, m)`` that SDPA
    broadcasts without expanding, and :math:`\bar g_j = \sum_i \bar S_{ij} = v_j \cdot \bar v_j - \sum_i P_{ij} D_i`
    with :math:`D_i = \bar o_i \cdot o_i`, the last sum one more pass (over queries, bias ``-LSE_i``). On CUDA the
    bias rides in an extra (aligned) head dimension of the keys, whose gradient is :math:`\bar g\, \sqrt d`.
    """
    head_dim, value_dim = q.shape[-1], v.shape[-1]
    scale = head_dim**-0.5
    work = potential_dtype(q.dtype)
    if BIAS_IN_HEAD_DIM.get(q.device.type, False):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in fused_inputs(q, k, v, key_bias)]
            out = F.scaled_dot_product_attention(*leaves, scale=scale)
            grads = torch.autograd.grad(out, leaves, F.pad(grad_out, [0, out.shape[-1] - value_dim]))
        grad_q, grad_k, grad_v = grads[0][..., :head_dim], grads[1][..., :head_dim], grads[2][..., :value_dim]
        return grad_q, grad_k, grad_v, grads[1][..., head_dim].to(work) * head_dim**0.5
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        out = F.scaled_dot_product_attention(*leaves, attn_mask=bias_mask(key_bias, q.dtype), scale=scale)
        grad_q, grad_k, grad_v = torch.autograd.grad(out, leaves, grad_out)
    delta = (grad_out.to(work) * out.detach().to(work)).sum(-1)  # D_i
    del out, leaves
    values = delta.unsqueeze(-1).expand_as(q).to(q.dtype).contiguous()  # as wide as the queries, for the kernel
    query_bias = padded_bias(-row_lse, token_mask)
    weighted_delta, lse = biased_attention(k, q, values, query_bias)
    delta_sums = torch.exp(key_bias + lse) * weighted_delta[..., 0]  # sum_i P_ij D_i
    return grad_q, grad_k, grad_v, (v.to(work) * grad_v.to(work)).sum(-1) - delta_sums


class _FlashSinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, n_iters: int, token_mask: Tensor | None) -> Tensor:
        work = potential_dtype(q.dtype)  # potentials and log-sum-exps (asap.ops' dtype policy)
        log_a = log_uniform(token_mask, q.shape[-2], work)
        log_b = log_uniform(token_mask, k.shape[-2], work)
        key_bias = k.new_zeros(k.shape[:-1], dtype=work)  # g_0 = 0
        key_biases, query_biases = [], []  # g_t (t = 0..T) and f_t (t = 0..T-1), padded tokens at NO_MASS
        for _ in range(n_iters):
            key_bias = padded_bias(key_bias, token_mask)
            key_biases.append(key_bias)
            query_bias = padded_bias(log_a - biased_lse(q, k, key_bias), token_mask)  # f_t
            query_biases.append(query_bias)
            key_bias = log_b - biased_lse(k, q, query_bias)  # g_{t+1}
        key_bias = padded_bias(key_bias, token_mask)
        key_biases.append(key_bias)
        out, row_lse = biased_attention(q, k, v, key_bias)
        if token_mask is not None:
            out = out * token_mask.unsqueeze(-1).to(out.dtype)
        ctx.n_iters, ctx.log_a, ctx.log_b = n_iters, log_a, log_b
        ctx.save_for_backward(q, k, v, token_mask, row_lse, *key_biases, *query_biases)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        q, k, v, token_mask, row_lse, *biases = ctx.saved_tensors
        key_biases, query_biases = biases[: ctx.n_iters + 1], biases[ctx.n_iters + 1 :]
        head_dim = q.shape[-1]
        scale = head_dim**-0.5
        if token_mask is not None:
            grad_out = grad_out * token_mask.unsqueeze(-1).to(grad_out.dtype)
        grad_q, grad_k, grad_v, grad_g = _output_pass_backward(q, k, v, key_biases[-1], row_lse, grad_out, token_mask)
        work = potential_dtype(q.dtype)
        grad_q, grad_k = grad_q.to(work, copy=True), grad_k.to(work, copy=True)  # accumulators from here on
        for t in reversed(range(ctx.n_iters)):
            # Column step g_{t+1} = log b - LSE_i(S_ij + f_t,i): S_bar_ij = u_j C^t_ij.
            u = -zero_invalid(grad_g, token_mask)
            weighted_queries, _ = biased_attention(k, q, q, query_biases[t])
            grad_k.addcmul_(u.unsqueeze(-1), weighted_queries, value=scale)
            del weighted_queries
            out, lse = biased_attention(q, k, _weighted(k, u), key_biases[t + 1])
            row_sums = torch.exp(query_biases[t] - ctx.log_b + lse)  # sum_j C^t_ij (0 on padded queries)
            grad_q.addcmul_(row_sums.unsqueeze(-1), out[..., :head_dim], value=scale)
            w = -row_sums * out[..., head_dim]  # -f_bar_t
            del out
            # Row step f_t = log a - LSE_j(S_ij + g_t,j): S_bar_ij = w_i R^t_ij.
            weighted_keys, _ = biased_attention(q, k, k, key_biases[t])
            grad_q.addcmul_(w.unsqueeze(-1), weighted_keys, value=scale)
            del weighted_keys
            out, lse = biased_attention(k, q, _weighted(q, w), query_biases[t])
            column_sums = torch.exp(key_biases[t] - ctx.log_a + lse)  # sum_i R^t_ij (0 on padded keys)
            grad_k.addcmul_(column_sums.unsqueeze(-1), out[..., :head_dim], value=scale)
            grad_g = column_sums * out[..., head_dim]
            del out
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v, None, None


def flash_sinkhorn_attention(q: Tensor, k: Tensor, v: Tensor, n_iters: int, token_mask: Tensor | None = None) -> Tensor:
    """Sinkformer attention output ``(n P) v`` after ``n_iters`` Sinkhorn iterations, never holding ``n x m``.

    Same value as ``asap.ops.sinkhorn_attention_matrix(q, k, n_iters, mask) @ v`` (the dense reference) and the same
    gradients as autograd through its unrolled iterations; ``2 n_iters + 1`` fused passes forward.

    Args:
        q: queries ``(B, H, n, d)``.
        k: keys ``(B, H, m, d)``.
        v: values ``(B, H, m, e)``.
        n_iters: Sinkhorn iterations ``T`` (column, row pairs after the first row step); 0 is softmax.
        token_mask: self-attention padding ``(B, 1|H, n)``, ``True`` = real token (needs ``m = n``).

    >>> q, k, v = torch.randn(3, 1, 2, 5, 4).unbind(0)
    >>> out = flash_sinkhorn_attention(q, k, v, n_iters=3)
    >>> from asap.ops import sinkhorn_attention_matrix
    >>> bool(torch.allclose(out, sinkhorn_attention_matrix(q, k, 3) @ v, atol=1e-5))
    True
    """
    if (
        q.ndim != 4
        or k.ndim != 4
        or v.ndim != 4
        or k.shape[-1] != q.shape[-1]
        or k.shape[:-1] != v.shape[:-1]
        or q.shape[:-2] != k.shape[:-2]
    ):
        raise ValueError(
            f"q, k, v must be (B, H, n, d), (B, H, m, d), (B, H, m, e); got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if n_iters < 0:
        raise ValueError(f"n_iters must be >= 0, got {n_iters}")
    if token_mask is not None:
        if token_mask.dtype != torch.bool:
            raise TypeError(f"token_mask must be boolean (True = real token), got {token_mask.dtype}")
        if q.shape[-2] != k.shape[-2] or token_mask.ndim != 3 or token_mask.shape[-1] != q.shape[-2]:
            raise ValueError(
                f"token_mask must be (B, 1|H, n) for self-attention with n = {q.shape[-2]} queries and keys, got "
                f"{tuple(token_mask.shape)} for {q.shape[-2]} queries and {k.shape[-2]} keys"
            )
        if checking_data() and not token_mask.any(-1).all():
            raise ValueError("token_mask leaves a problem with no valid token")
    return _FlashSinkhorn.apply(q, k, v, n_iters, token_mask)
