"""``nn.Module`` wrappers: the multi-head attention layer and its normalisers."""

from asap.nn.attention import (
    Attention,
    attention_layer,
    attention_layers,
    convert,
    key_padding_mask,
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
