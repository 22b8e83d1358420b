"""Functional attention and optimal-transport operators (pure torch, batched, differentiable)."""

from asap.ops.attention import (
    attention_scores,
    c_transform_weights,
    sinkhorn_weights,
    sliced_dual_features,
    sliced_weights,
    softmax_attention,
    softmax_weights,
    weighted_values,
)
from asap.ops.entropic import (
    attention_from_potentials,
    column_c_transform,
    entropic_c_transform,
    row_c_transform,
    sinkhorn,
    transport_plan,
)
from asap.ops.flash_sinkhorn import flash_sinkhorn_attention
from asap.ops.fused import attention_with_lse, fused_c_transform_attention
from asap.ops.kantorovich import kantorovich_1d
from asap.ops.sinkhorn_backward import sinkhorn_attention_matrix
from asap.ops.sliced import sliced_transport_plan, soft_sort
from asap.ops.slicing import project, slice_directions

__all__ = [
    "attention_with_lse",
    "flash_sinkhorn_attention",
    "fused_c_transform_attention",
    "attention_from_potentials",
    "attention_scores",
    "c_transform_weights",
    "column_c_transform",
    "entropic_c_transform",
    "kantorovich_1d",
    "project",
    "row_c_transform",
    "sinkhorn",
    "sinkhorn_attention_matrix",
    "sinkhorn_weights",
    "slice_directions",
    "sliced_dual_features",
    "sliced_transport_plan",
    "sliced_weights",
    "soft_sort",
    "softmax_attention",
    "softmax_weights",
    "transport_plan",
    "weighted_values",
]
