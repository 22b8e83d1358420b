"""Saving and loading compiled models: weights, dual maps and slice directions, with metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from asap.models import create_model
from asap.provenance import provenance
from asap.results import write_atomic

FORMAT = "asap-compiled/1"


def save_compiled(model: nn.Module, path: str | Path, model_args: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write ``{format, model_args, state_dict, metadata + provenance}``; ``create_model(**model_args)`` rebuilds
    the architecture. Written to a temporary file and renamed, so a crash leaves no partial file."""
    payload = {
        "format": FORMAT,
        "model_args": model_args,
        "state_dict": model.state_dict(),
        "metadata": {**metadata, "provenance": provenance()},
    }
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_compiled(path: str | Path) -> dict[str, Any]:
    """The payload of a compiled file, loaded with ``weights_only=True`` (a pickle that would run code is refused,
    never run). Raises ``FileNotFoundError`` or a one-line ``ValueError`` naming the file and the problem."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no compiled model at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt, or code-carrying: torch's message speaks of pickles
        raise ValueError(f"{path} is not an asap compiled model (it does not load: {type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an asap compiled model (expected format {FORMAT!r})")
    missing = [key for key in ("model_args", "state_dict", "metadata") if not isinstance(payload.get(key), dict)]
    if missing:
        raise ValueError(f"{path} is an incomplete asap compiled model: no {', '.join(missing)}")
    return payload


def load_compiled(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The compiled model at ``path``, rebuilt from its ``model_args`` or loaded into ``model``.

    Raises a ``ValueError`` naming the differences when ``model`` does not match the file (another
    architecture, another attention variant, other slice counts).
    """
    payload = read_compiled(path)
    if model is None:
        model = create_model(**payload["model_args"])
    check_fits(payload, model, path)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def check_fits(payload: dict[str, Any], model: nn.Module, path: str | Path) -> None:
    """Raise a ``ValueError`` naming the differences when the weights of a compiled file's ``payload`` (from
    :func:`read_compiled`) do not fit ``model``: another architecture, attention variant or slice count."""
    expected = {key: tuple(value.shape) for key, value in payload["state_dict"].items()}
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if expected != actual:
        missing = sorted(expected.keys() - actual.keys())
        unexpected = sorted(actual.keys() - expected.keys())
        reshaped = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
        attention = payload["model_args"].get("attention")
        raise ValueError(
            f"{path} holds a compiled {attention!r} model that does not match this model: "
            f"missing from the model {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"not in the file {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
            f"other shapes {reshaped[:5]}"
        )
