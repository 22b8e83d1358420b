"""The statistics behind every verdict: paired accuracy intervals, an exact binomial test, a median's interval.

numpy only, so that a reviewer can recompute a verdict from the committed files without the rest of the stack.

- :func:`tango_interval`: Tango's score interval for a difference of paired proportions (Tango 1998,
  *Statistics in Medicine* 17:891-908). With ``b`` examples right only for the model and ``c`` right only for
  the reference, out of ``N``, the difference is ``delta = (b - c) / N`` and the score statistic for
  ``H0: delta = delta0`` is

  .. math:: Z(\\delta_0) = \\frac{b - c - N\\delta_0}{\\sqrt{N\\,(2\\tilde p_{21} + \\delta_0 - \\delta_0^2)}},

  where :math:`\\tilde p_{21}` is the maximum-likelihood estimate of the discordant cell ``p21`` under ``H0``,
  the positive root of :math:`2N p^2 + B p + C = 0`, :math:`B = -(b + c) + \\delta_0 (2N - b + c)`,
  :math:`C = -c\\,\\delta_0 (1 - \\delta_0)`. The interval is ``{delta0 : |Z| <= z_(1 - alpha/2)}``. Unlike the
  percentile bootstrap it does not collapse to a point when few examples are discordant: with ``b = c = 0``
  its ends are ``+-z^2 / (N + z^2)``. The numerator is moved half a unit towards 0 (:data:`CONTINUITY`), which
  keeps the coverage at its level where the discordant pairs are few and one-sided.
- :func:`binomial_sf`: exact ``P(X >= k)`` for ``X ~ Binomial(N, p)`` (the test that a model beats its
  constant predictor).
- :func:`median_interval_ranks` and :func:`median_interval`: the distribution-free order-statistic interval
  of a median (ranks 4 and 12 of 15 at 95%), for speed-ups measured in interleaved rounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

# Half a unit of b - c off the score's numerator: without it the 90% interval covers only 0.86 of the time
# where the discordant pairs are few and one-sided (about 5 expected, N = 1,000 or 10,000; exact coverage in
# tests/test_stats.py); with it coverage stays >= 0.90 over 0-20 expected discordant pairs.
CONTINUITY = 0.5


def _restricted_p21(b: np.ndarray, c: np.ndarray, n: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Maximum-likelihood ``p21`` under ``delta = p12 - p21`` (the positive root in the module docstring)."""
    quadratic_b = -(b + c) + delta * (2 * n - b + c)
    quadratic_c = -c * delta * (1 - delta)
    root = (np.sqrt(np.maximum(quadratic_b**2 - 8 * n * quadratic_c, 0.0)) - quadratic_b) / (4 * n)
    return np.clip(root, np.maximum(0.0, -delta), (1 - delta) / 2)


def tango_score(b, c, n, delta, continuity: float = CONTINUITY) -> np.ndarray:
    """Tango's score statistic ``Z(delta)`` (module docstring), its numerator moved ``continuity`` towards 0;
    non-increasing in ``delta``."""
    b, c, n, delta = (np.asarray(x, dtype=float) for x in (b, c, n, delta))
    p21 = _restricted_p21(b, c, n, delta)
    variance = n * (2 * p21 + delta - delta**2)
    numerator = b - c - n * delta
    numerator = np.sign(numerator) * np.maximum(np.abs(numerator) - continuity, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = numerator / np.sqrt(variance)
    return np.where(variance > 0, score, np.sign(numerator) * np.inf)


def tango_interval(b, c, n, level: float = 0.90, continuity: float = CONTINUITY) -> tuple[np.ndarray, np.ndarray]:
    """Tango's score interval of ``(b - c) / n`` (module docstring), with :data:`CONTINUITY`: ``b`` examples
    right only for the model, ``c`` right only for the reference, ``n`` paired examples; arrays broadcast. Ends
    by bisection (60 halvings of ``[-1, 1]``).

    >>> low, high = tango_interval(0, 0, 1000, continuity=0)
    >>> round(float(low), 5), round(float(high), 5)
    (-0.0027, 0.0027)
    """
    b, c, n = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (b, c, n)))
    if np.any(n < 1) or np.any(b < 0) or np.any(c < 0) or np.any(b + c > n):
        raise ValueError("need 0 <= b, c and b + c <= n, n >= 1")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    estimate = (b - c) / n

    def solve(target: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        # Z is decreasing in delta: keep Z(low) >= target > Z(high)
        for _ in range(60):
            middle = (low + high) / 2
            above = tango_score(b, c, n, middle, continuity) >= target
            low, high = np.where(above, middle, low), np.where(above, high, middle)
        return (low + high) / 2

    lower = solve(z, np.full_like(estimate, -1.0), estimate)
    upper = solve(-z, estimate, np.full_like(estimate, 1.0))
    return lower, upper


def discordant_counts(correct: np.ndarray, reference_correct: np.ndarray) -> tuple[int, int, int]:
    """``(b, c, n)``: examples right only for the model, right only for the reference, and all examples."""
    correct, reference_correct = np.asarray(correct, bool), np.asarray(reference_correct, bool)
    if correct.shape != reference_correct.shape or correct.ndim != 1 or not len(correct):
        raise ValueError(f"need two non-empty (N,) vectors, got {correct.shape} and {reference_correct.shape}")
    return int((correct & ~reference_correct).sum()), int((~correct & reference_correct).sum()), len(correct)


def paired_difference_interval(
    correct: np.ndarray, reference_correct: np.ndarray, level: float = 0.90
) -> tuple[float, float]:
    """Tango's interval of ``accuracy(model) - accuracy(reference)`` on the same examples."""
    low, high = tango_interval(*discordant_counts(correct, reference_correct), level=level)
    return float(low), float(high)


def binomial_sf(successes: int, trials: int, probability: float) -> float:
    """Exact ``P(X >= successes)`` for ``X ~ Binomial(trials, probability)`` (log-space sum).

    >>> round(binomial_sf(8, 10, 0.5), 6)
    0.054688
    """
    if not 0 <= successes <= trials or not 0 <= probability <= 1:
        raise ValueError(f"need 0 <= successes <= trials and p in [0, 1], got {successes}, {trials}, {probability}")
    if probability in (0.0, 1.0):
        return float(successes == 0 or probability == 1.0)
    k = np.arange(successes, trials + 1, dtype=float)
    log_terms = (
        math.lgamma(trials + 1)
        - np.array([math.lgamma(x + 1) + math.lgamma(trials - x + 1) for x in k])
        + k * math.log(probability)
        + (trials - k) * math.log1p(-probability)
    )
    top = log_terms.max()
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def median_interval_ranks(count: int, level: float = 0.95) -> tuple[int, int]:
    """1-based ranks ``(l, count + 1 - l)`` of the distribution-free interval of a median: the largest ``l``
    with ``P(Binomial(count, 1/2) <= l - 1) <= (1 - level) / 2``.

    >>> median_interval_ranks(15)
    (4, 12)
    """
    tail = (1 - level) / 2
    cumulative, rank = 0.0, 0
    while True:
        cumulative += math.comb(count, rank) / 2**count
        if cumulative > tail:
            break
        rank += 1
    if rank < 1:
        raise ValueError(f"{count} measurements are too few for a {level:.0%} interval of the median")
    return rank, count + 1 - rank


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(median, low, high)`` of ``values`` with :func:`median_interval_ranks`."""
    ordered = np.sort(np.asarray(values, dtype=float))
    if not np.all(np.isfinite(ordered)):
        raise ValueError("the values hold NaN or infinity")
    low, high = median_interval_ranks(len(ordered), level)
    return float(np.median(ordered)), float(ordered[low - 1]), float(ordered[high - 1])
