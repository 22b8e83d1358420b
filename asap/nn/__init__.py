"""``nn.Module`` wrappers: the multi-head attention layer and its normalisers."""

from asap.nn.attention import Attention, attention_layer, key_padding_mask
from asap.nn.normalisers import (
    ASAP,
    NORMALISERS,
    LinearDualMap,
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
    "attention_layer",
    "LinearDualMap",
    "Normaliser",
    "SlicedTransport",
    "Sinkhorn",
    "Softmax",
    "create_normaliser",
    "key_padding_mask",
]
