"""Maps from a query's sliced 1-D potentials ``phi (L,)`` to its entropic dual ``f``, one per head.

Both take ``features (B, H, N, L)`` and return ``f (B, H, N)``; they are fitted by ``asap.compile``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LinearDualMap(nn.Module):
    """``f = phi . w_h + b_h``: closed-form ridge regression fits it."""

    def __init__(self, num_heads: int, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, num_features))
        self.bias = nn.Parameter(torch.zeros(num_heads))

    def forward(self, features: Tensor) -> Tensor:
        return torch.einsum("bhnl,hl->bhn", features, self.weight) + self.bias[:, None]


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
