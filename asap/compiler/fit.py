r"""Fitting the potential -> dual maps, and the scores that say how well they fit.

Two objectives (``FITS``):

- ``"ridge"``: least squares on the teacher's query dual ``f`` (closed form; :func:`fit_dual_map`);
- ``"kl"``: the ridge map refined on the *plans*: minimise the mean over valid queries of the row divergence
  :math:`\mathrm{KL}(A_{i\cdot} \,\|\, \hat A_{i\cdot})` between the teacher's attention and ASAP's
  reconstruction from the predicted dual (:func:`fit_dual_map_to_plans`). A small error in ``f`` is
  exponentiated in the plan, and worst where attention is sharp, so a good R^2 of the dual does not bound the
  plan error; the KL objective weighs the dual's errors by what they do to the attention. The divergence is the
  generalised one, :math:`\sum_j p_j \log(p_j / q_j) - p_j + q_j`, which is the KL for the normalised rows of
  the two-sided reconstruction and stays a divergence for the one-sided one (rows not normalised).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from asap import ops
from asap.nn.dual_maps import LinearDualMap, MLPDualMap, ridge_from_moments
from asap.ops.masking import potential_dtype

FITS = ("ridge", "kl")


def ridge_fit(features: Tensor, targets: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """Per head, ``argmin_w,b |X w + b - y|^2 + ridge * T * |w|^2`` in closed form (float64).

    ``features (H, T, L)``, ``targets (H, T)`` -> ``weight (H, L)``, ``bias (H,)``.
    """
    x, y = features.double(), targets.double()
    count = torch.full((x.shape[0],), float(x.shape[1]), dtype=x.dtype, device=x.device)
    moments = x.sum(1), y.sum(1), x.transpose(1, 2) @ x, (x * y.unsqueeze(-1)).sum(1)
    weight, bias = ridge_from_moments(count, *moments, ridge)
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


@dataclass
class TeacherPlan:
    """One calibration batch of one layer as plan fitting sees it: the scores ``S (B, H, N, N)`` (float32 at
    least), the pair mask, the teacher's log attention (``-inf`` on masked pairs) and the real queries as
    weights ``(B, 1|H, N)``."""

    scores: Tensor
    pairs: Tensor | None
    log_attention: Tensor
    queries: Tensor


def teacher_plan(q: Tensor, k: Tensor, pairs: Tensor | None, n_iters: int) -> TeacherPlan:
    """The teacher's attention (``n_iters`` Sinkhorn iterations) in the log domain, for ``q, k (B, H, N, d)``."""
    scores = ops.attention_scores(q, k)
    scores = scores.to(potential_dtype(scores.dtype))
    f, g = ops.sinkhorn(scores, n_iters, pairs)
    queries = torch.ones_like(f[:, :1]) if pairs is None else pairs.any(-1).to(scores.dtype)
    return TeacherPlan(scores, pairs, ops.log_attention_from_potentials(scores, f, g, pairs), queries)


def reconstructed_log_attention(f: Tensor, plan: TeacherPlan, sides: bool | Tensor) -> Tensor:
    """ASAP's log attention rebuilt from a query dual ``f (B, H, N)`` on the teacher's scores."""
    f2, g = ops.entropic_c_transform(plan.scores, f, plan.pairs, sides)
    return ops.log_attention_from_potentials(plan.scores, f2, g, plan.pairs)


def row_divergence(log_reference: Tensor, log_approximation: Tensor) -> Tensor:
    """Generalised KL of each row ``(..., N, N) -> (..., N)``: ``sum_j p log(p / q) - p + q``; masked pairs
    (``-inf`` in both) count 0.

    >>> p = torch.tensor([[0.5, 0.5]]).log()
    >>> float(row_divergence(p, p))
    0.0
    >>> round(float(row_divergence(p, torch.tensor([[0.25, 0.75]]).log())), 4)  # KL of normalised rows
    0.1438
    """
    valid = log_reference > -torch.inf
    p, q = log_reference.exp(), log_approximation.exp()
    gap = torch.where(valid, log_reference - log_approximation, 0.0)
    return (p * gap - p + q).sum(-1)


def mean_row_divergence(log_approximation: Tensor, plan: TeacherPlan) -> tuple[Tensor, Tensor]:
    """Per head, the summed row divergence over the batch's real queries and their count ``(H,), (H,)``."""
    rows = row_divergence(plan.log_attention, log_approximation) * plan.queries  # (B, H, N)
    return rows.sum(dim=(0, 2)), plan.queries.expand_as(rows).sum(dim=(0, 2))


@torch.no_grad()
def plan_scores(
    dual_map: LinearDualMap, features: Sequence[Tensor], plans: Sequence[TeacherPlan], sides: bool | Tensor
) -> tuple[Tensor, Tensor]:
    """Per head ``(plan_error, kl)`` over ``plans``: relative Frobenius error of the reconstructed attention and
    mean row KL(teacher || ASAP) over the real queries."""
    error = norm = divergence = count = 0.0
    for phi, plan in zip(features, plans, strict=True):
        log_attention = reconstructed_log_attention(dual_map(phi), plan, sides)
        reference = plan.log_attention.exp()
        error = error + (log_attention.exp() - reference).square().sum(dim=(0, 2, 3))
        norm = norm + reference.square().sum(dim=(0, 2, 3))
        total, queries = mean_row_divergence(log_attention, plan)
        divergence, count = divergence + total, count + queries
    return (error / norm).sqrt(), divergence / count


def fit_dual_map_to_plans(
    dual_map: LinearDualMap,
    features: Sequence[Tensor],
    plans: Sequence[TeacherPlan],
    heldout_features: Sequence[Tensor],
    heldout_plans: Sequence[TeacherPlan],
    sides: bool | Tensor,
    steps: int = 300,
    lr: float = 1e-2,
    eval_every: int = 10,
    patience: int = 5,
) -> LinearDualMap:
    """A copy of ``dual_map`` refined by Adam on the mean row KL(teacher || ASAP) over the calibration batches
    (one batch a step, in turn), from its current parameters (the ridge fit).

    Every head has its own parameters (the leading dim of each) and its own term of the loss, so the heads are
    fitted independently in one run, and early-stopped independently: every ``eval_every`` steps the held-out
    KL is measured and each head keeps its parameters at its best held-out KL (the start included, so the
    held-out KL never ends above the ridge map's). The run stops once no head has improved for ``patience``
    evaluations.
    """
    fitted = copy.deepcopy(dual_map)
    parameters = dict(fitted.named_parameters())
    best = {name: parameter.detach().clone() for name, parameter in parameters.items()}
    best_kl = plan_scores(fitted, heldout_features, heldout_plans, sides)[1]
    optimiser = torch.optim.Adam(parameters.values(), lr=lr)
    stale = 0
    with torch.enable_grad():
        for step in range(steps):
            index = step % len(plans)
            total, queries = mean_row_divergence(
                reconstructed_log_attention(fitted(features[index]), plans[index], sides), plans[index]
            )
            optimiser.zero_grad()
            (total / queries).sum().backward()  # a sum over heads: each head's gradient is its own KL's
            optimiser.step()
            if (step + 1) % eval_every:
                continue
            kl = plan_scores(fitted, heldout_features, heldout_plans, sides)[1]
            improved = kl < best_kl
            stale = 0 if improved.any() else stale + 1
            best_kl = torch.minimum(kl, best_kl)
            for name, parameter in parameters.items():
                best[name][improved] = parameter.detach()[improved]
            if stale == patience:
                break
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(best[name])
    return fitted
