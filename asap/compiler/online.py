"""ASAP from the dual maps a teacher learned while it trained (:mod:`asap.nn.online_map`): no calibration data."""

from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn

from asap.compiler.capture import sinkhorn_layers
from asap.nn import ASAP


def online_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Sinkhorn attention layers of ``model`` that learned an online dual map, by module name."""
    return {name: layer for name, layer in sinkhorn_layers(model).items() if layer.normaliser.online_map is not None}


@torch.no_grad()
def compile_online(model: nn.Module, two_sided: bool = True) -> nn.Module:
    """A copy of ``model`` whose Sinkhorn layers are ASAP with the online maps (solved from their moments):
    the same slice directions, the ridge map, the scores of the last validation epoch as the calibration report
    (``r2``, ``plan_error``)."""
    layers = online_layers(model)
    if not layers:
        raise ValueError("the model has no Sinkhorn layer with an online dual map (train it with online_map=True)")
    student = copy.deepcopy(model).eval()
    for layer in online_layers(student).values():
        online = layer.normaliser.online_map
        online.solve()
        asap = ASAP(layer.num_heads, layer.head_dim, online.directions.shape[-1], two_sided).to(online.weight.device)
        asap.directions.copy_(online.directions)
        asap.dual_map.weight.copy_(online.weight)
        asap.dual_map.bias.copy_(online.bias)
        asap.r2.copy_(online.r2)
        asap.plan_error.copy_(online.plan_error)
        asap.calibrated.fill_(True)
        layer.set_normaliser(asap)
    return student


def online_report(model: nn.Module) -> pd.DataFrame:
    """One row per (layer, head) of the online maps' scores on the last validation epoch."""
    rows = [
        {"layer": name, "head": head, "r2": float(online.r2[head]), "plan_error": float(online.plan_error[head])}
        for name, layer in online_layers(model).items()
        for online in [layer.normaliser.online_map]
        for head in range(layer.num_heads)
    ]
    return pd.DataFrame(rows)
