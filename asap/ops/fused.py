r"""ASAP inference without any ``n x n`` tensor: two fused attention passes.

Given the predicted query dual ``f``, ASAP needs

.. math::
    g_j = \log b - \operatorname{LSE}_i (S_{ij} + f_i), \qquad
    \mathrm{out}_i = \sum_j \operatorname{softmax}_j (S_{ij} + g_j)\, v_j .

The column pass is attention with the roles swapped (keys attend to queries, additive bias ``f`` on the
queries) of which only the log-sum-exp is needed; the row pass is attention with additive bias ``g`` on the
keys. Fused kernels (torch's flash attention on CPU, memory-efficient attention on CUDA) return that
log-sum-exp and stream over blocks, so memory stays ``O(n d)``. The one-sided plan
``A = n exp(S + f (+) g)`` follows from the row pass's log-sum-exp:
``out_i = n exp(f_i + LSE_j(S_ij + g_j)) softmax-out_i``. :func:`asap.ops.c_transform_weights` is the
dense reference this is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor]:
    """``softmax_j(q_i . k_j / sqrt(d) + key_bias_j) v`` and its row log-sum-exp ``(..., n)``.

    The bias ``(..., m)`` rides in one extra head dimension, ``[q, 1] . [k, bias sqrt(d)] / sqrt(d)``, so fused
    kernels run without an attention mask (a broadcast mask would be expanded to ``n x m``). Uses a fused kernel
    that returns the log-sum-exp where torch has one (and no gradient is needed), else the dense computation.
    """
    scale = q.shape[-1] ** -0.5
    if not torch.is_grad_enabled() or not (q.requires_grad or k.requires_grad or v.requires_grad):
        fused_cpu = q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16, torch.float16)
        if fused_cpu or q.device.type == "cuda":
            q_aug = torch.cat([q, torch.ones_like(q[..., :1])], dim=-1)
            k_aug = torch.cat([k, (key_bias / scale).unsqueeze(-1).to(k.dtype)], dim=-1)
            v_aug = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
            if fused_cpu:
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q_aug, k_aug, v_aug, 0.0, False, scale=scale
                )
            else:
                out, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
                    q_aug, k_aug, v_aug, None, True, scale=scale
                )
            return out[..., : v.shape[-1]], lse[..., : q.shape[-2]]
    scores = (q @ k.transpose(-1, -2)) * scale + key_bias.unsqueeze(-2)
    lse = torch.logsumexp(scores, dim=-1)
    return torch.exp(scores - lse.unsqueeze(-1)) @ v, lse


def fused_c_transform_attention(
    q: Tensor, k: Tensor, v: Tensor, f: Tensor, token_mask: Tensor | None = None, two_sided: bool = True
) -> Tensor:
    """ASAP's attention output from the query dual ``f (B, H, n)``, in two fused passes (self-attention).

    ``token_mask (B, 1|H, n)`` marks real tokens (padding); padded queries get a zero output, as in the dense path.
    """
    n = q.shape[-2]
    big_negative = -1e5  # exp() of it vanishes, and it stays finite once scaled into the extra head dimension
    if token_mask is None:
        log_n = torch.log(torch.tensor(float(n), dtype=q.dtype, device=q.device))
        query_bias = f
    else:
        log_n = token_mask.sum(-1, keepdim=True).to(q.dtype).log()
        query_bias = f.masked_fill(~token_mask, big_negative)
    _, column_lse = attention_with_lse(k, q, q, query_bias)  # only the log-sum-exp is used
    g = -log_n - column_lse  # log b_j - LSE_i(S_ij + f_i), with b = 1/n over the valid keys
    if token_mask is not None:
        g = g.masked_fill(~token_mask, big_negative)
    out, row_lse = attention_with_lse(q, k, v, g)
    if not two_sided:
        out = out * torch.exp(f + log_n + row_lse).unsqueeze(-1)
    if token_mask is not None:
        out = out * token_mask.unsqueeze(-1).to(out.dtype)
    return out
