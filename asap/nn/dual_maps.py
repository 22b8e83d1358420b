"""Maps from a query's sliced 1-D potentials ``phi (L,)`` to its entropic dual ``f``, one per head.

Both take ``features (B, H, N, L)`` and return ``f (B, H, N)``; they are fitted by ``asap.compiler``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ridge_from_moments(
    count: Tensor, x_sum: Tensor, y_sum: Tensor, xx_sum: Tensor, xy_sum: Tensor, ridge: float
) -> tuple[Tensor, Tensor]:
    """Per head, ``argmin_w,b sum (x w + b - y)^2 + ridge * count * |w|^2`` from the (weighted) moments of its
    data: ``count (H,)``, ``x_sum (H, F)``, ``y_sum (H,)``, ``xx_sum (H, F, F)``, ``xy_sum (H, F)`` (float64
    advised). Returns ``weight (H, F)`` and ``bias (H,)``. The centred Gram matrix is
    ``xx_sum - x_sum x_sum^T / count``, so the moments can be accumulated batch by batch (and decayed)."""
    x_mean, y_mean = x_sum / count[:, None], y_sum / count
    gram = xx_sum - count[:, None, None] * x_mean[:, :, None] * x_mean[:, None, :]
    cross = xy_sum - count[:, None] * x_mean * y_mean[:, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + ridge * count[:, None, None] * eye, cross.unsqueeze(-1)).squeeze(-1)
    return weight, y_mean - (x_mean * weight).sum(-1)


def linear_dual(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``f = phi . w_h + b_h``: ``features (B, H, N, F)``, ``weight (H, F)``, ``bias (H,)`` -> ``f (B, H, N)``.

    As ``(1, F) @ (F, N)`` per problem: the features come as a transposed view of a contiguous ``(B, H, F, N)``
    tensor (:func:`asap.ops.sliced_dual_features`), which this reads without a copy."""
    return torch.matmul(weight.unsqueeze(-2).to(features.dtype), features.mT).squeeze(-2) + bias[:, None]


class LinearDualMap(nn.Module):
    """``f = phi . w_h + b_h``: closed-form ridge regression fits it."""

    def __init__(self, num_heads: int, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, num_features))
        self.bias = nn.Parameter(torch.zeros(num_heads))

    def forward(self, features: Tensor) -> Tensor:
        return linear_dual(features, self.weight, self.bias)


class MLPDualMap(LinearDualMap):
    """The linear map plus a per-head one-hidden-layer residual: ``f = linear(phi) + w2 . gelu(W1 phi + b1)``.

    The residual starts at zero (``w2 = 0``), so fitting starts from the ridge solution.
    """

    def __init__(self, num_heads: int, num_features: int, hidden: int = 32) -> None:
        super().__init__(num_heads, num_features)
        self.hidden_weight = nn.Parameter(torch.randn(num_heads, num_features, hidden) / num_features**0.5)
        self.hidden_bias = nn.Parameter(torch.zeros(num_heads, hidden))
        self.out_weight = nn.Parameter(torch.zeros(num_heads, hidden))

    def forward(self, features: Tensor) -> Tensor:
        hidden = F.gelu(torch.einsum("bhnl,hlk->bhnk", features, self.hidden_weight) + self.hidden_bias[:, None])
        return super().forward(features) + torch.einsum("bhnk,hk->bhn", hidden, self.out_weight)


DUAL_MAPS: dict[str, type[LinearDualMap]] = {"linear": LinearDualMap, "mlp": MLPDualMap}
