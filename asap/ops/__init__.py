"""Functional attention and optimal-transport operators (pure torch, batched, differentiable).

Dtype policy
------------
Inputs (``q, k, v``, scores) may be float32, bfloat16 or float16 (or float64). Potentials, log-sum-exps, the
1-D potentials' cumulative sums and sliced transport's soft sorts are computed in at least float32
(:func:`asap.ops.masking.potential_dtype`): potentials are of order ``log n + |S|`` and cancel in
``exp(S + f + g)``, so half-precision potentials would give percent-level plan errors. Attention outputs and
matrices come back in the input dtype. Fill values follow the dtype: masked scores get
:func:`asap.ops.masking.masked_fill_value`, padded biases :data:`asap.ops.fused.NO_MASS` in float32, clamped
where they enter a half-precision head dimension. Measured through ``asap.nn.Attention`` with padding
(``tests/test_precision_and_compile.py``, n = 48 and a sharp n = 512): relative output error against float64
from the same rounded weights at most 1.5e-2 in bfloat16 and 2e-3 in float16 for every normaliser (3e-2 and
4e-3 for sliced transport, whose SoftSort at tau = 1e-3 amplifies input rounding).

Devices and torch.compile
-------------------------
Buffers (slice directions) follow the input's device and dtype. Checks that read the data (finite inputs,
non-empty masks) run in eager mode and are skipped inside ``torch.compile`` (:func:`asap.ops.masking.checking_data`),
so every normaliser compiles in eval mode without a graph break.
"""

from asap.ops.dual_features import (
    DUAL_FEATURES,
    check_dual_features,
    dual_features,
    num_dual_features,
    row_lse_features,
    sliced_dual_features,
)
from asap.ops.entropic import (
    attention_from_potentials,
    column_c_transform,
    entropic_c_transform,
    log_attention_from_potentials,
    row_c_transform,
    sinkhorn,
    teacher_query_dual,
    transport_plan,
)
from asap.ops.flash_sinkhorn import flash_sinkhorn_attention
from asap.ops.fused import LSE_PASS_IMPLS, attention_with_lse, biased_lse, fused_c_transform_attention, lse_pass_impl
from asap.ops.kantorovich import kantorovich_1d
from asap.ops.normalised_attention import (
    ASAP_IMPLS,
    FLASH_SINKHORN_MIN_LEN,
    FLASH_SINKHORN_SMALL_HEADS,
    SINKHORN_IMPLS,
    asap_impl,
    attention_scores,
    c_transform_attention_matrix,
    sinkhorn_attention,
    sinkhorn_attention_matrix,
    sinkhorn_impl,
    sliced_attention_matrix,
    softmax_attention,
    softmax_attention_matrix,
    weighted_values,
)
from asap.ops.projections import project, slice_directions
from asap.ops.sinkhorn_backward import lean_sinkhorn_attention_matrix
from asap.ops.sliced_transport import sliced_transport_plan, soft_sort

__all__ = [
    "DUAL_FEATURES",
    "check_dual_features",
    "dual_features",
    "num_dual_features",
    "row_lse_features",
    "ASAP_IMPLS",
    "FLASH_SINKHORN_MIN_LEN",
    "FLASH_SINKHORN_SMALL_HEADS",
    "LSE_PASS_IMPLS",
    "asap_impl",
    "biased_lse",
    "lse_pass_impl",
    "SINKHORN_IMPLS",
    "sinkhorn_attention",
    "sinkhorn_impl",
    "attention_with_lse",
    "flash_sinkhorn_attention",
    "fused_c_transform_attention",
    "attention_from_potentials",
    "log_attention_from_potentials",
    "attention_scores",
    "c_transform_attention_matrix",
    "column_c_transform",
    "entropic_c_transform",
    "kantorovich_1d",
    "project",
    "row_c_transform",
    "sinkhorn",
    "teacher_query_dual",
    "lean_sinkhorn_attention_matrix",
    "sinkhorn_attention_matrix",
    "slice_directions",
    "sliced_dual_features",
    "sliced_transport_plan",
    "sliced_attention_matrix",
    "soft_sort",
    "softmax_attention",
    "softmax_attention_matrix",
    "transport_plan",
    "weighted_values",
]
