"""Fitting the potential -> dual maps, and the scores that say how well they fit."""

from __future__ import annotations

import torch
from torch import Tensor

from asap.nn.dual_maps import LinearDualMap, MLPDualMap


def ridge_fit(features: Tensor, targets: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """Per head, ``argmin_w,b |X w + b - y|^2 + ridge * T * |w|^2`` in closed form (float64).

    ``features (H, T, L)``, ``targets (H, T)`` -> ``weight (H, L)``, ``bias (H,)``.
    """
    x = features.double()
    y = targets.double()
    x_mean, y_mean = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.transpose(1, 2) @ xc + ridge * x.shape[1] * torch.eye(x.shape[2], dtype=x.dtype)
    weight = torch.linalg.solve(gram, (xc.transpose(1, 2) @ yc.unsqueeze(-1))).squeeze(-1)
    bias = y_mean.squeeze(1) - (x_mean.squeeze(1) * weight).sum(-1)
    return weight.to(features.dtype), bias.to(features.dtype)


def predict(dual_map: LinearDualMap, features: Tensor) -> Tensor:
    """``features (H, T, L) -> (H, T)``."""
    return dual_map(features.unsqueeze(0)).squeeze(0)


@torch.no_grad()
def fit_dual_map(
    dual_map: LinearDualMap,
    features: Tensor,
    targets: Tensor,
    ridge: float = 1e-4,
    mlp_steps: int = 300,
    mlp_batch: int = 4096,
    seed: int = 0,
) -> None:
    """Ridge for the linear part; for :class:`MLPDualMap`, then Adam on the mean squared error over random
    minibatches of ``mlp_batch`` queries."""
    weight, bias = ridge_fit(features, targets, ridge)
    dual_map.weight.copy_(weight)
    dual_map.bias.copy_(bias)
    if isinstance(dual_map, MLPDualMap):
        optimiser = torch.optim.Adam(dual_map.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            for _ in range(mlp_steps):
                batch = torch.randint(features.shape[1], (min(mlp_batch, features.shape[1]),), generator=generator)
                optimiser.zero_grad()
                loss = (predict(dual_map, features[:, batch]) - targets[:, batch]).square().mean()
                loss.backward()
                optimiser.step()


def r_squared(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per head ``1 - SS_res / SS_tot`` over the last dim."""
    residual = (predictions - targets).square().sum(-1)
    total = (targets - targets.mean(-1, keepdim=True)).square().sum(-1)
    return 1 - residual / total


def relative_error(approximations: list[Tensor], references: list[Tensor]) -> Tensor:
    """Per head ``||A - R||_F / ||R||_F`` over all matrices ``(B, H, N, N)`` of a list of batches."""
    error = sum((a - r).square().sum(dim=(0, 2, 3)) for a, r in zip(approximations, references, strict=True))
    norm = sum(r.square().sum(dim=(0, 2, 3)) for r in references)
    return (error / norm).sqrt()
