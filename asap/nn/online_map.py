r"""A dual map learned while the teacher trains: ASAP without a separate calibration step.

Every training forward of a Sinkhorn layer that carries an :class:`OnlineDualMap` adds that batch's
calibration data (the sliced features of the queries and the teacher's own query dual,
:func:`asap.ops.teacher_query_dual`, both on detached ``q, k``) to exponentially decayed moments, from which
the ridge map is the closed-form solution (:func:`asap.nn.dual_maps.ridge_from_moments`):

.. math::
    M_t = \beta M_{t-1} + \sum_{i \in \text{batch}_t} m(x_i, y_i), \qquad
    m(x, y) = (1, x, y, x x^\top, x y),

a recursive least-squares fit with forgetting factor :math:`\beta` (``decay``), so the map follows the
teacher as it trains and forgets the features of its early, different weights. Nothing reaches the teacher:
no gradient (the inputs are detached and the map holds buffers, not parameters, so the teacher's optimiser,
weight decay and gradient clipping never see it) and no random number (the directions are seeded), so the
teacher trains exactly as without the map; the cost is the features, one Sinkhorn run without gradient and
the moments, per layer and training step.

During validation (``scoring`` on, set by :class:`asap.train.callbacks.OnlineCalibration`) the layer scores
the map solved at the start of that validation epoch on the validation batches: held-out R^2 of the dual and
relative plan error of the two-sided reconstruction, per head, kept in buffers (the calibration report of
the last validation epoch, saved with every checkpoint). :func:`asap.compiler.compile_online` turns such a
model into an ASAP model without touching data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asap import ops
from asap.nn.dual_maps import linear_dual, ridge_from_moments
from asap.ops.masking import pair_mask, token_mask


class OnlineDualMap(nn.Module):
    """Decayed ridge moments of (sliced features, teacher dual) and the map solved from them, per head.

    Args:
        num_slices: ``L`` random orthonormal slice directions (default: the head dimension), seeded by ``seed``.
        decay: the moments' forgetting factor per training step (``0.98``: a window of about 50 steps).
        ridge: the ridge penalty, relative to the (decayed) number of queries, as in :func:`asap.compiler`.
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        num_slices: int | None = None,
        decay: float = 0.98,
        ridge: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        num_slices = num_slices or head_dim
        self.decay, self.ridge, self.scoring = decay, ridge, False
        features = 2 * num_slices  # potentials + mean-field terms, as ASAP's
        directions = ops.slice_directions(head_dim, num_slices, seed).expand(num_heads, -1, -1).clone()
        self.register_buffer("directions", directions)
        moments = {
            "count": (num_heads,),
            "x_sum": (num_heads, features),
            "y_sum": (num_heads,),
            "xx_sum": (num_heads, features, features),
            "xy_sum": (num_heads, features),
        }
        for name, shape in moments.items():
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(num_heads, features))
        self.register_buffer("bias", torch.zeros(num_heads))
        self.register_buffer("solved", torch.tensor(False))
        self.register_buffer("r2", torch.full((num_heads,), torch.nan))  # of the last validation epoch
        self.register_buffer("plan_error", torch.full((num_heads,), torch.nan))
        self._scores: dict[str, Tensor] = {}

    def _pairs(self, q: Tensor, k: Tensor, mask: Tensor | None, n_iters: int) -> tuple[Tensor, Tensor, Tensor]:
        """Features ``(B, H, N, F)``, the teacher's dual ``(B, H, N)`` and the valid queries ``(B, 1|H, N)``."""

        tokens = token_mask(mask)
        features = ops.sliced_dual_features(q, k, self.directions, tokens).double()
        dual = ops.teacher_query_dual(ops.attention_scores(q, k), n_iters, pair_mask(mask)).double()
        valid = torch.ones_like(dual[:, :1]) if tokens is None else tokens.to(dual.dtype)
        return features, dual, valid.expand_as(dual)

    @torch.no_grad()
    def update(self, q: Tensor, k: Tensor, mask: Tensor | None, n_iters: int) -> None:
        """Decay the moments and add this batch's (``q, k (B, H, N, d)``, detached here)."""
        features, dual, valid = self._pairs(q.detach(), k.detach(), mask, n_iters)
        weighted = features * valid.unsqueeze(-1)  # padded queries add nothing
        batch_moments = {
            "count": valid.sum(dim=(0, 2)),
            "x_sum": weighted.sum(dim=(0, 2)),
            "y_sum": (dual * valid).sum(dim=(0, 2)),
            "xx_sum": torch.einsum("bhnf,bhng->hfg", weighted, features),
            "xy_sum": torch.einsum("bhnf,bhn->hf", weighted, dual),
        }
        for name, value in batch_moments.items():
            getattr(self, name).mul_(self.decay).add_(value)

    @torch.no_grad()
    def solve(self) -> None:
        """The ridge map of the current moments, into ``weight`` and ``bias``."""
        if not bool((self.count > 0).all()):
            raise RuntimeError("the online dual map has seen no training batch: there is nothing to solve")
        moments = (self.count, self.x_sum, self.y_sum, self.xx_sum, self.xy_sum)
        weight, bias = ridge_from_moments(*moments, self.ridge)
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self.solved.fill_(True)

    def predict(self, features: Tensor) -> Tensor:
        """``features (B, H, N, F) -> f (B, H, N)``."""
        return linear_dual(features, self.weight.to(features), self.bias.to(features))

    def start_scoring(self) -> None:
        """Solve the map and score it on the batches that follow (validation), until :meth:`finish_scoring`."""
        self.solve()
        self.scoring = True
        zeros = torch.zeros_like(self.bias, dtype=torch.float64)
        self._scores = {name: zeros.clone() for name in ("residual", "y_sum", "y_square", "count", "error", "norm")}

    @torch.no_grad()
    def score(self, q: Tensor, k: Tensor, mask: Tensor | None, n_iters: int) -> None:
        """Add one batch's held-out residuals of the dual and the reconstruction's plan error to the scores."""

        features, dual, valid = self._pairs(q, k, mask, n_iters)
        predicted = self.predict(features)
        teacher = ops.sinkhorn_attention_matrix(q.double(), k.double(), n_iters, pair_mask(mask))
        rebuilt = ops.c_transform_attention_matrix(q.double(), k.double(), predicted, pair_mask(mask), True)
        batch = {
            "residual": ((predicted - dual).square() * valid).sum(dim=(0, 2)),
            "y_sum": (dual * valid).sum(dim=(0, 2)),
            "y_square": (dual.square() * valid).sum(dim=(0, 2)),
            "count": valid.sum(dim=(0, 2)),
            "error": (rebuilt - teacher).square().sum(dim=(0, 2, 3)),
            "norm": teacher.square().sum(dim=(0, 2, 3)),
        }
        for name, value in batch.items():
            self._scores[name] += value

    def finish_scoring(self) -> None:
        """Store the scores of the batches seen since :meth:`start_scoring` in ``r2`` and ``plan_error``."""
        self.scoring = False
        scores = self._scores
        if scores and bool((scores["count"] > 0).all()):
            total = scores["y_square"] - scores["y_sum"].square() / scores["count"]
            self.r2.copy_(1 - scores["residual"] / total)
            self.plan_error.copy_((scores["error"] / scores["norm"]).sqrt())
        self._scores = {}

    def extra_repr(self) -> str:
        return f"slices={self.directions.shape[-1]}, decay={self.decay}, ridge={self.ridge}"
