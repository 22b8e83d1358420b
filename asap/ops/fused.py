r"""ASAP inference without any ``n x n`` tensor: a log-sum-exp pass and a fused attention pass.

Given the predicted query dual ``f``, ASAP needs

.. math::
    g_j = \log b - \operatorname{LSE}_i (S_{ij} + f_i), \qquad
    \mathrm{out}_i = \sum_j \operatorname{softmax}_j (S_{ij} + g_j)\, v_j .

The column pass is attention with the roles swapped (keys attend to queries, additive bias ``f`` on the
queries) of which only the log-sum-exp is needed (:func:`biased_lse`: scores formed and reduced a cache-sized
block at a time, or a fused kernel whose output is discarded, whichever :func:`lse_pass_impl` measured faster);
the row pass is attention with additive bias ``g`` on the keys. Fused kernels (torch's flash attention on CPU,
memory-efficient attention on CUDA) return that log-sum-exp and stream over blocks, so memory stays
``O(n d)``. The one-sided plan ``A = n exp(S + f (+) g)`` follows from the row pass's log-sum-exp:
``out_i = n exp(f_i + LSE_j(S_ij + g_j)) softmax-out_i``. :func:`asap.ops.c_transform_attention_matrix` is the
dense reference this is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from asap.ops.masking import log_uniform, potential_dtype

NO_MASS = -1e5  # a bias whose exp() vanishes, yet stays finite once scaled into an extra head dimension (CUDA)

# dtypes of the fused kernels that return the log-sum-exp (CPU flash attention, CUDA memory-efficient attention)
FUSED_DTYPES = {
    "cpu": (torch.float64, torch.float32, torch.bfloat16, torch.float16),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}


def padded_bias(potential: Tensor, token_mask: Tensor | None) -> Tensor:
    """A potential used as a bias, with padded tokens (``token_mask`` False) at :data:`NO_MASS`, so that they
    neither send nor receive mass."""
    return potential if token_mask is None else potential.masked_fill(~token_mask, NO_MASS)


def bias_mask(key_bias: Tensor, dtype: torch.dtype) -> Tensor:
    """The key bias ``(B, H, m)`` as an additive attention mask ``(B, H, 1, m)`` for inputs of ``dtype``: in the
    potentials' precision, and contiguous (a strided bias, such as a kernel's log-sum-exp, runs 2x slower)."""
    return key_bias.to(potential_dtype(dtype)).contiguous().unsqueeze(-2)


# How the bias reaches each device's fused kernel. CPU flash attention reads an additive mask (B, H, 1, m)
# through a zero stride, at no cost over plain attention. CUDA's memory-efficient kernel would need the bias
# padded to an aligned length, which expands a broadcast mask to n x m: there the bias rides in an extra head
# dimension instead. Both routes run on CPU (the tests exercise the CUDA one with the CPU kernel).
BIAS_IN_HEAD_DIM = {"cpu": False, "cuda": True}


def fused_head_width(head_dim: int, value_dim: int) -> int:
    """Common head width of the augmented ``q, k, v`` of the bias-in-head-dimension route: room for the bias
    and for the values (fused kernels want ``q, k, v`` equally wide), rounded up to a multiple of 8, as CUDA's
    fused kernels want aligned head dimensions (zero padding leaves every dot product unchanged)."""
    return -(-max(head_dim + 1, value_dim) // 8) * 8


def fused_inputs(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``q, k, v`` zero-padded to :func:`fused_head_width`, the key bias riding in dimension ``d`` of the keys:
    ``[q, 1] . [k, bias sqrt(d)] / sqrt(d) = q . k / sqrt(d) + bias``. Use with ``scale = d ** -0.5``."""
    head_dim, value_dim = q.shape[-1], v.shape[-1]
    width = fused_head_width(head_dim, value_dim)
    q_aug = torch.cat([q, torch.ones_like(q[..., :1])], dim=-1)
    lowest = -torch.finfo(k.dtype).max / (2 * head_dim**0.5)  # NO_MASS * sqrt(d) overflows float16
    k_aug = torch.cat([k, (key_bias.clamp(min=lowest) * head_dim**0.5).unsqueeze(-1).to(k.dtype)], dim=-1)
    pad = [0, width - head_dim - 1]
    return F.pad(q_aug, pad), F.pad(k_aug, pad), F.pad(v, [0, width - value_dim])


def _fused_kernel(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
    """The device's fused attention kernel that returns the row log-sum-exp (equal head widths)."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=mask, scale=scale
        )
    out, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, mask, True, scale=scale)
    return out, lse[..., : q.shape[-2]]  # the kernel pads the log-sum-exp's length


def biased_attention(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor]:
    """``softmax_j(q_i . k_j / sqrt(d) + key_bias_j) v_j`` and its row log-sum-exp ``(B, H, n)``, from a fused
    kernel in ``O((n + m) d)`` memory; no autograd (for inputs that need no gradient).

    ``q, k`` are ``(B, H, n|m, d)``, ``v`` is ``(B, H, m, e)``, ``key_bias`` is ``(B, H, m)``.

    * CPU: torch's flash kernel, the bias an additive mask ``(B, H, 1, m)`` broadcast over the queries (read
      through a zero stride, never expanded). The kernel wants ``q, k, v`` equally wide: if ``e != d`` all
      three are zero-padded to the wider one (zeros leave every dot product unchanged).
    * CUDA: memory-efficient attention, the bias riding in an extra head dimension (:func:`fused_inputs`),
      widths padded to a multiple of 8 for alignment (:data:`BIAS_IN_HEAD_DIM`).
    * Other devices and dtypes: the dense computation.

    The log-sum-exp comes back in at least float32 (:func:`asap.ops.masking.potential_dtype`), the output in
    ``v``'s dtype. On CPU the bias stays in that precision too (the kernel takes a float32 mask with half inputs);
    in the head-dimension route it is rounded to the keys' dtype.
    """
    head_dim, value_dim = q.shape[-1], v.shape[-1]
    scale = head_dim**-0.5
    device = q.device.type
    if device in FUSED_DTYPES and q.dtype in FUSED_DTYPES[device]:
        if BIAS_IN_HEAD_DIM[device]:
            out, lse = _fused_kernel(*fused_inputs(q, k, v, key_bias), None, scale)
        else:
            width = max(head_dim, value_dim)
            if width != head_dim or width != value_dim:
                q, k, v = (F.pad(t, [0, width - t.shape[-1]]) for t in (q, k, v))
            out, lse = _fused_kernel(q, k, v, bias_mask(key_bias, q.dtype), scale)
        return out[..., :value_dim], lse.to(potential_dtype(q.dtype))
    return _dense_biased_attention(q, k, v, key_bias)


def _dense_biased_attention(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`biased_attention` on the dense ``n x m`` scores (in the potentials' precision), differentiable."""
    work = potential_dtype(q.dtype)
    scores = (q.to(work) @ k.to(work).transpose(-1, -2)) * q.shape[-1] ** -0.5 + key_bias.unsqueeze(-2)
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.exp(scores - lse.unsqueeze(-1)) @ v.to(work)).to(v.dtype), lse


# The log-sum-exp-only pass: where only ``LSE_j(S_ij + bias_j)`` is needed (ASAP's column step, the flash teacher's
# half-steps, the row log-sum-exp features) a fused kernel still multiplies by values it then throws away (torch's
# CPU flash kernel wants q, k, v equally wide). The blocked pass forms the scores a block at a time, small enough to
# stay in cache, and reduces each block at once: no values, no output. Which one runs is measured
# (``asap bench speed``'s ``lse_pass`` and ``fused_pass`` rows); see lse_pass_impl.
LSE_PASS_IMPLS = ("auto", "blocked", "kernel")
LSE_BLOCK_SCORES = 2**18  # scores per block: 1 MB in float32, inside a core's L2
# On CPU (measured side by side, 1 and 2 threads, n = 17 to 4096, `asap bench speed`'s lse_pass rows keep
# checking it): the blocked pass is faster from d = 64 on and n >= 64; below d = 64 the exponentials, not the
# values' multiply, bound the kernel's pass, and at short n the blocks' Python overhead outweighs the saving.
BLOCKED_LSE_MIN_HEAD_DIM = 64
BLOCKED_LSE_MIN_LEN = 64


def lse_pass_impl(head_dim: int, seq_len: int, device: torch.device | str) -> str:
    """The log-sum-exp-only pass that ``impl="auto"`` runs over ``seq_len`` keys: ``blocked`` on CPU from
    :data:`BLOCKED_LSE_MIN_HEAD_DIM` and :data:`BLOCKED_LSE_MIN_LEN` on, the fused ``kernel`` otherwise: on CUDA
    (not measured: no GPU was lent when this rule was set) and under ``torch.compile``, which would unroll the
    blocks into its graph."""
    blocked = head_dim >= BLOCKED_LSE_MIN_HEAD_DIM and seq_len >= BLOCKED_LSE_MIN_LEN
    if torch.device(device).type == "cpu" and blocked and not torch.compiler.is_compiling():
        return "blocked"
    return "kernel"


def blocked_biased_lse(q: Tensor, k: Tensor, key_bias: Tensor) -> Tensor:
    r"""``LSE_j(q_i . k_j / sqrt(d) + key_bias_j)`` ``(B, H, n)`` in blocks of at most :data:`LSE_BLOCK_SCORES`
    scores: per block one ``baddbmm`` (the bias added by the multiply) and one reduction while the block is in
    cache; ``O(block + (n + m) d)`` memory. In the potentials' precision (at least float32)."""
    work = potential_dtype(q.dtype)
    *lead, seq_len, head_dim = q.shape
    keys = k.shape[-2]
    queries = q.to(work).reshape(-1, seq_len, head_dim)  # (P, n, d): every leading index is one problem
    keys_t = k.to(work).reshape(-1, keys, head_dim).mT  # (P, d, m)
    bias = key_bias.to(work).reshape(-1, 1, keys)  # (P, 1, m)
    problems = queries.shape[0]
    rows = max(1, min(seq_len, LSE_BLOCK_SCORES // keys))  # query rows per block
    group = max(1, min(problems, LSE_BLOCK_SCORES // (rows * keys)))  # problems per block (short sequences)
    lse = queries.new_empty(problems, seq_len)
    for p in range(0, problems, group):
        for i in range(0, seq_len, rows):
            scores = torch.baddbmm(
                bias[p : p + group], queries[p : p + group, i : i + rows], keys_t[p : p + group], alpha=head_dim**-0.5
            )  # (group, rows, m)
            lse[p : p + group, i : i + rows] = torch.logsumexp(scores, dim=-1)
    return lse.reshape(*lead, seq_len)


def biased_lse(q: Tensor, k: Tensor, key_bias: Tensor, impl: str = "auto") -> Tensor:
    """``LSE_j(q_i . k_j / sqrt(d) + key_bias_j)`` ``(B, H, n)`` alone, by the blocked pass
    (:func:`blocked_biased_lse`) or a fused kernel's (:func:`biased_attention`, its output discarded);
    ``"auto"``: :func:`lse_pass_impl`. Where a gradient is needed, the dense computation."""
    if impl not in LSE_PASS_IMPLS:
        raise ValueError(f"unknown log-sum-exp pass {impl!r}; choose one of {LSE_PASS_IMPLS}")
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, key_bias)):
        return _dense_biased_attention(q, k, k, key_bias)[1]
    if impl == "auto":
        impl = lse_pass_impl(q.shape[-1], k.shape[-2], q.device)
    if impl == "blocked":
        return blocked_biased_lse(q, k, key_bias)
    return biased_attention(q, k, k, key_bias)[1]  # values unused: the keys, equally wide


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`biased_attention` where no gradient is needed, else the dense computation, which autograd can
    differentiate."""
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in (q, k, v, key_bias)):
        return biased_attention(q, k, v, key_bias)
    return _dense_biased_attention(q, k, v, key_bias)


def fused_c_transform_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    f: Tensor,
    token_mask: Tensor | None = None,
    two_sided: bool | Tensor = True,
    lse_impl: str = "auto",
) -> Tensor:
    """ASAP's attention output from the query dual ``f (B, H, n)``, in two passes (self-attention): the column
    step's log-sum-exp alone (:func:`biased_lse`, by ``lse_impl``), then the biased row pass.

    ``token_mask (B, 1|H, n)`` marks real tokens (padding); padded queries get a zero output, as in the dense path.
    ``two_sided`` may be a boolean tensor broadcastable to ``(B, H)`` (a side per head: ``(H,)``). One-sided
    rows are the two-sided ones rescaled: ``n exp(S_ij + f_i + g_j) = softmax_j(S_ij + g_j) * n exp(f_i + LSE_i)``.
    """
    f = f.to(potential_dtype(q.dtype))
    log_n = -log_uniform(token_mask, q.shape[-2], f.dtype)
    column_lse = biased_lse(k, q, padded_bias(f, token_mask), lse_impl)
    g = padded_bias(-log_n - column_lse, token_mask)  # log b_j - LSE_i(S_ij + f_i), with b = 1/n over valid keys
    out, row_lse = attention_with_lse(q, k, v, g)
    if isinstance(two_sided, Tensor) or not two_sided:
        # log of a one-sided row's sum, at most log m on a real query; a padded query's is unbounded (its f is
        # no dual of anything) and overflowed into inf * 0 = NaN: it gets none (its output is zero anyway)
        log_row_sums = f + log_n + row_lse
        if token_mask is not None:
            log_row_sums = log_row_sums.masked_fill(~token_mask, -torch.inf)
        if isinstance(two_sided, Tensor):
            log_row_sums = torch.where(two_sided.to(f.device).unsqueeze(-1), 0.0, log_row_sums)
        out = (out.to(f.dtype) * log_row_sums.exp().unsqueeze(-1)).to(out.dtype)
    if token_mask is not None:
        out = out * token_mask.unsqueeze(-1).to(out.dtype)
    return out
