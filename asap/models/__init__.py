"""Models by name: every model takes the attention variant and its options."""

from __future__ import annotations

from typing import Any

from torch import nn

from asap.models.text import PAD_ID, TextClassifier
from asap.models.vision import vit_classifier

MODELS = {"vit": vit_classifier, "text_encoder": TextClassifier}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """``create_model("vit", image_size=28, in_chans=1, num_classes=10, attention="sinkhorn", ...)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "PAD_ID", "TextClassifier", "create_model", "vit_classifier"]
