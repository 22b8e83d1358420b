"""Attention normalisers: what turns queries and keys into attention weights, chosen by name.

Every normaliser maps ``q, k, v`` of shape ``(B, H, N, d)`` and an optional boolean mask broadcastable to
``(B, H, N, N)`` (SDPA semantics, ``True`` = attend) to the attention output ``(B, H, N, d)``, and exposes
the attention matrix through :meth:`Normaliser.weights`. None of them owns the q/k/v/out projections, so a
trained model's weights load unchanged when its normaliser is switched.

For the doubly-stochastic normalisers a key-padding mask ``(B, 1, 1, N)`` also pads the queries (self-
attention: a padded token neither sends nor receives mass); padded queries get a zero output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from asap import ops
from asap.nn.dual_maps import DUAL_MAPS
from asap.nn.online_map import OnlineDualMap
from asap.ops.masking import checking_data, pair_mask, token_mask


class Normaliser(nn.Module):
    """Base class: subclasses implement :meth:`weights`; :meth:`forward` applies them to ``v``."""

    name: str

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
        return ops.weighted_values(self.weights(q, k, mask), v, dropout_p, self.training)


class Softmax(Normaliser):
    """Standard row-softmax attention (torch's fused SDPA)."""

    name = "softmax"

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        return ops.softmax_attention_matrix(q, k, mask)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
        return ops.softmax_attention(q, k, v, mask, dropout_p if self.training else 0.0)


class Sinkhorn(Normaliser):
    """Sinkformer: ``n_iters`` log-domain Sinkhorn iterations, differentiated end to end.

    ``impl`` chooses how, all with the same value and the same (unrolled) gradients:

    * ``flash``: fused attention passes, ``O(n d)`` memory forward and backward
      (:func:`asap.ops.flash_sinkhorn_attention`); padding masks only, no attention dropout;
    * ``lean``: the ``n x n`` matrix with an exact backward that saves ``O(n)`` per iteration
      (:func:`asap.ops.lean_sinkhorn_attention_matrix`);
    * ``unrolled``: plain autograd through the iterations (the reference);
    * ``auto`` (default): :func:`asap.ops.sinkhorn_impl` of the sequence length and device, falling back to
      ``lean`` where flash does not apply (a mask that is not a key-padding mask ``(B, 1, 1, N)``, attention
      dropout).

    ``online_map=True`` (or the options of :class:`asap.nn.online_map.OnlineDualMap`) learns ASAP's dual map
    while the teacher trains, without changing the teacher's training (see :mod:`asap.nn.online_map`).
    """

    name = "sinkhorn"

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        n_iters: int = 3,
        impl: str = "auto",
        online_map: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        if impl not in ops.SINKHORN_IMPLS:
            raise ValueError(f"unknown Sinkhorn implementation {impl!r}; choose one of {ops.SINKHORN_IMPLS}")
        if n_iters < 0:
            raise ValueError(f"n_iters must be >= 0, got {n_iters}")
        self.n_iters = n_iters
        self.impl = impl
        self.online_map: OnlineDualMap | None = None
        if online_map:
            if n_iters < 1:
                raise ValueError("an online dual map needs a Sinkhorn teacher (n_iters >= 1)")
            options = online_map if isinstance(online_map, dict) else {}
            self.online_map = OnlineDualMap(num_heads, head_dim, **options)

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.impl == "unrolled":
            return ops.sinkhorn_attention_matrix(q, k, self.n_iters, pair_mask(mask))
        return ops.lean_sinkhorn_attention_matrix(ops.attention_scores(q, k), self.n_iters, pair_mask(mask))

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
        if self.online_map is not None:
            if self.training:
                self.online_map.update(q, k, mask, self.n_iters)
            elif self.online_map.scoring:
                self.online_map.score(q, k, mask, self.n_iters)
        dropout = self.training and dropout_p > 0
        impl = self.impl
        if impl == "auto":
            padding_only = mask is None or (mask.ndim >= 2 and mask.shape[-2] == 1)
            training = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
            impl = ops.sinkhorn_impl(q.shape[-2], q.device, q.shape[-1], training)
            impl = impl if padding_only and not dropout else "lean"
        if impl != "flash":
            return super().forward(q, k, v, mask, dropout_p)
        if dropout:
            raise ValueError("the flash Sinkhorn has no attention dropout; use impl='lean' or 'auto' with it")
        return ops.sinkhorn_attention(q, k, v, self.n_iters, token_mask(mask), impl="flash")

    def extra_repr(self) -> str:
        return f"n_iters={self.n_iters}, impl={self.impl}, online_map={self.online_map is not None}"


class SlicedTransport(Normaliser):
    """ESPFormer: cost-weighted average of sorted 1-D plans on fixed slices.

    The defaults are ESPFormer's published attention settings (``input_scale=None`` is ``d^(-1/2)``, SoftSort
    at ``tau = 1e-3``, summed slice costs, ``t = 10``); ``hard_sort=True`` is its hard-sort variant. See
    :func:`asap.ops.sliced_transport_plan` for the math and the mapping to this project's earlier defaults.
    """

    name = "sliced"

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        num_slices: int | None = None,
        sort_temperature: float = 1e-3,
        cost_temperature: float = 10.0,
        seed: int = 0,
        input_scale: float | None = None,
        cost_reduction: str = "sum",
        hard_sort: bool = False,
    ) -> None:
        super().__init__()
        if cost_reduction not in ops.sliced_transport.COST_REDUCTIONS:
            raise ValueError(
                f"unknown cost reduction {cost_reduction!r}; choose one of {ops.sliced_transport.COST_REDUCTIONS}"
            )
        self.sort_temperature = sort_temperature
        self.cost_temperature = cost_temperature
        self.input_scale = input_scale
        self.cost_reduction = cost_reduction
        self.hard_sort = hard_sort
        # Regenerated from (num_slices, seed): not part of the state dict.
        self.register_buffer("directions", ops.slice_directions(head_dim, num_slices, seed), persistent=False)

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        return ops.sliced_attention_matrix(
            q,
            k,
            self.directions,
            self.sort_temperature,
            self.cost_temperature,
            token_mask(mask),
            input_scale=self.input_scale,
            cost_reduction=self.cost_reduction,
            hard_sort=self.hard_sort,
        )

    def extra_repr(self) -> str:
        slices = self.directions.shape[-1]
        scale = "d^-1/2" if self.input_scale is None else self.input_scale
        return (
            f"slices={slices}, sort_temperature={self.sort_temperature}, cost_temperature={self.cost_temperature}, "
            f"input_scale={scale}, cost_reduction={self.cost_reduction}, hard_sort={self.hard_sort}"
        )


SIDES = (True, False, "auto")
# What calibration measures on its held-out batches, per head (see asap.compiler): the deployed reconstruction's
# dual R^2, relative plan error and mean row KL(teacher || ASAP); the same for the ridge map it started from;
# and the plan error of each side (two-sided: rows exact; one-sided: columns exact), each with its own map.
CALIBRATION_SCORES = (
    "r2",
    "plan_error",
    "kl",
    "ridge_r2",
    "ridge_plan_error",
    "ridge_kl",
    "two_sided_plan_error",
    "one_sided_plan_error",
)


class ASAP(Normaliser):
    """ASAP: sliced features -> learned map -> query dual ``f`` -> entropic c-transform(s). No iteration.

    Features (:mod:`asap.ops.dual_features`): per slice the exact 1-D Kantorovich potential of the query and
    a mean-field term (``features="sliced"``, the paper's), plus the row log-sum-exps of the scores at two
    temperatures with ``features="sliced+lse"`` (one more fused pass; for sharp attention); the map is per head
    (linear by default, ``dual_map="mlp"`` for a residual MLP).

    ``g = c-transform of f over queries``; two-sided: ``A_ij = softmax_j(S_ij + g_j)``; one-sided:
    ``A = n exp(S + f (+) g)``; ``two_sided="auto"``: a side per head, chosen by calibration and kept in the
    ``head_two_sided`` buffer. The slice directions ``(H, d, L)`` and the dual map are fixed by calibration
    on a trained Sinkhorn teacher (``asap.compiler``); running an uncalibrated ASAP layer is an error.

    ``impl`` chooses how the plan is applied, with the same value: ``fused`` (a log-sum-exp pass and a fused
    attention pass, no ``n x n`` tensor, :func:`asap.ops.fused_c_transform_attention`), ``dense`` (the matrix,
    the reference; also what attention dropout in training runs) or ``auto`` (default: :func:`asap.ops.asap_impl`
    of the length and device).
    """

    name = "asap"

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        num_slices: int | None = None,
        two_sided: bool | str = True,
        dual_map: str = "linear",
        seed: int = 0,
        impl: str = "auto",
        features: str = "sliced",
    ) -> None:
        super().__init__()
        ops.check_dual_features(features)
        if impl not in ops.ASAP_IMPLS:
            raise ValueError(f"unknown ASAP implementation {impl!r}; choose one of {ops.ASAP_IMPLS}")
        if dual_map not in DUAL_MAPS:
            raise ValueError(f"unknown dual map {dual_map!r}; choose one of {sorted(DUAL_MAPS)}")
        if not (isinstance(two_sided, bool) or two_sided == "auto"):
            raise ValueError(f"two_sided must be one of {SIDES} ('auto': a side per head), got {two_sided!r}")
        num_slices = num_slices or head_dim
        self.two_sided = two_sided
        self.impl = impl
        self.dual_map_kind = dual_map
        self.features = features
        directions = ops.slice_directions(head_dim, num_slices, seed).expand(num_heads, -1, -1).clone()
        self.register_buffer("directions", directions)
        self.dual_map = DUAL_MAPS[dual_map](num_heads, ops.num_dual_features(num_slices, features))
        self.register_buffer("calibrated", torch.tensor(False))
        self.register_buffer("head_two_sided", torch.ones(num_heads, dtype=torch.bool))  # used when "auto"
        for score in CALIBRATION_SCORES:  # the calibration report, saved with the model
            self.register_buffer(score, torch.full((num_heads,), torch.nan))

    def sides(self) -> bool | Tensor:
        """The reconstruction's side: ``True`` (rows exact), ``False`` (columns exact) or, for ``"auto"``, the
        per-head choice ``(H,)``."""
        return self.head_two_sided if self.two_sided == "auto" else self.two_sided

    def head_sides(self) -> list[bool]:
        """Each head's side: ``True`` two-sided (rows exact), ``False`` one-sided (columns exact)."""
        sides = self.sides()
        return sides.tolist() if isinstance(sides, Tensor) else [sides] * self.directions.shape[0]

    def dual(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        """The predicted query-side dual ``f (B, H, N)``."""
        if checking_data() and not bool(self.calibrated):
            raise RuntimeError(
                "ASAP attention is not calibrated: compile it from a trained Sinkhorn teacher with "
                "asap.compile(...) or load a compiled checkpoint"
            )
        return self.dual_map(ops.dual_features(q, k, self.directions, token_mask(mask), self.features))

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        return ops.c_transform_attention_matrix(q, k, self.dual(q, k, mask), pair_mask(mask), self.sides())

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
        impl = ops.asap_impl(q.shape[-2], q.device) if self.impl == "auto" else self.impl
        if impl == "dense" or (self.training and dropout_p > 0):  # attention dropout needs the matrix
            return super().forward(q, k, v, mask, dropout_p)
        f = self.dual(q, k, mask)
        return ops.fused_c_transform_attention(q, k, v, f, token_mask(mask), self.sides())

    def extra_repr(self) -> str:
        slices = self.directions.shape[-1]
        return (
            f"slices={slices}, features={self.features}, two_sided={self.two_sided}, dual_map={self.dual_map_kind}, "
            f"impl={self.impl}"
        )


NORMALISERS: dict[str, type[Normaliser]] = {cls.name: cls for cls in (Softmax, Sinkhorn, SlicedTransport, ASAP)}


def create_normaliser(name: str, num_heads: int, head_dim: int, **options: Any) -> Normaliser:
    """Build a normaliser by name (``softmax``, ``sinkhorn``, ``sliced``, ``asap``) with its options."""
    if name not in NORMALISERS:
        raise ValueError(f"unknown attention normaliser {name!r}; choose one of {sorted(NORMALISERS)}")
    return NORMALISERS[name](num_heads, head_dim, **options)
