"""``nn.Module`` wrappers: the multi-head attention layer and its normalisers."""

from asap.nn.attention import (
    Attention,
    attention_layer,
    attention_layers,
    convert,
    with_normaliser,
)
from asap.nn.dual_maps import DUAL_MAPS, LinearDualMap, MLPDualMap
from asap.nn.normalisers import (
    ASAP,
    NORMALISERS,
    Normaliser,
    Sinkhorn,
    SlicedTransport,
    Softmax,
    create_normaliser,
)
from asap.ops.masking import key_padding_mask  # layer-level padding, exported with the layer

__all__ = [
    "ASAP",
    "NORMALISERS",
    "Attention",
    "DUAL_MAPS",
    "MLPDualMap",
    "attention_layer",
    "attention_layers",
    "convert",
    "LinearDualMap",
    "Normaliser",
    "SlicedTransport",
    "Sinkhorn",
    "Softmax",
    "create_normaliser",
    "key_padding_mask",
    "with_normaliser",
]
