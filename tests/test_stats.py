"""The verdict's statistics against independent references: a brute-force inversion of the score test, exact
coverage, scipy's binomial test and a direct count of order statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from asap.stats import (
    binomial_sf,
    median_interval,
    median_interval_ranks,
    paired_difference_interval,
    tango_interval,
)


def brute_force_score(b: int, c: int, n: int, delta: float, continuity: float) -> float:
    """The score statistic with the restricted maximum-likelihood p21 found on a dense grid (no closed form).
    The grid spans [max(0, -delta), +0.05]: every case here has p21 well below 0.05."""
    grid = np.linspace(max(0.0, -delta), max(0.0, -delta) + 0.05, 50_001)
    p12, rest = grid + delta, 1 - 2 * grid - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = sum(
            np.where(count > 0, count * np.log(cell), 0.0) for count, cell in ((b, p12), (c, grid), (n - b - c, rest))
        )
    best = grid[np.nanargmax(np.where(np.isnan(loglik), -np.inf, loglik))]
    numerator = b - c - n * delta
    numerator = math.copysign(max(abs(numerator) - continuity, 0.0), numerator)
    return numerator / math.sqrt(n * (2 * best + delta - delta**2))


@pytest.mark.parametrize("continuity", [0.0, 0.5])
@pytest.mark.parametrize(("b", "c", "n"), [(0, 0, 1000), (0, 3, 1000), (2, 9, 1000), (40, 25, 10_000), (7, 0, 500)])
def test_tango_interval_inverts_the_score_test(b, c, n, continuity):
    low, high = tango_interval(b, c, n, continuity=continuity)
    z = scipy_stats.norm.ppf(0.95)
    for end, inside in ((float(low), +1), (float(high), -1)):  # steps of 1e-5 across each end
        deltas = end + np.linspace(-2e-3, 2e-3, 401)
        accepted = deltas[[abs(brute_force_score(b, c, n, d, continuity)) <= z for d in deltas]]
        assert len(accepted) and (accepted.min() if inside > 0 else accepted.max()) == pytest.approx(end, abs=2e-5)


def test_few_discordant_examples_keep_the_interval_wide():
    """The percentile bootstrap's upper end is exactly 0 when the model is wrong on 1-3 examples and right on
    none; the score interval reaches above 0 and keeps a width of at least 0.5 points at N = 1,000."""
    for c in range(4):
        low, high = paired_difference_interval(np.r_[np.zeros(c, bool), np.ones(997, bool)], np.ones(997 + c, bool))
        assert high > 0 and high - low > 0.005


def exact_coverage(n: int, expected_discordant: float, share_model: float, max_pairs: int = 90) -> float:
    """P(the 90% interval holds the true difference), summed over every (b, c) with b + c <= max_pairs."""
    p12, p21 = expected_discordant * share_model / n, expected_discordant * (1 - share_model) / n
    b, c = (grid.ravel() for grid in np.meshgrid(np.arange(max_pairs + 1), np.arange(max_pairs + 1)))
    keep = b + c <= max_pairs
    b, c = b[keep], c[keep]
    probability = scipy_stats.multinomial.pmf(np.stack([b, c, n - b - c], 1), n, [p12, p21, 1 - p12 - p21])
    low, high = tango_interval(b, c, n)
    truth = p12 - p21
    return float(probability[(low <= truth + 1e-12) & (truth - 1e-12 <= high)].sum())


@pytest.mark.parametrize("n", [1000, 10_000])
def test_coverage_holds_with_0_to_20_discordant_pairs(n):
    worst = min(
        exact_coverage(n, pairs, share)
        for pairs in (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
        for share in (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)
    )
    assert worst >= 0.89
    # a seeded simulation agrees with the exact sum where the uncorrected interval fails (0.86)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, [0, 5 / n, 1 - 5 / n], size=20_000)
    low, high = tango_interval(counts[:, 0], counts[:, 1], n)
    simulated = np.mean((low <= -5 / n) & (-5 / n <= high))
    assert simulated == pytest.approx(exact_coverage(n, 5, 0.0), abs=0.01) and simulated >= 0.89


@pytest.mark.parametrize(("k", "n", "p"), [(700, 1000, 0.62), (650, 1066, 0.62), (0, 5, 0.3), (12, 12, 0.9)])
def test_binomial_sf_matches_scipy(k, n, p):
    assert binomial_sf(k, n, p) == pytest.approx(scipy_stats.binomtest(k, n, p, alternative="greater").pvalue, rel=1e-9)


def test_median_interval_ranks_by_direct_count():
    for count in (15, 16, 20, 31):
        low, high = median_interval_ranks(count)
        coverage = sum(math.comb(count, j) for j in range(low, high)) / 2**count
        assert coverage >= 0.95 and high == count + 1 - low
        wider = sum(math.comb(count, j) for j in range(low + 1, high - 1)) / 2**count
        assert wider < 0.95  # the interval is the narrowest of its kind
    assert median_interval(list(range(15, 0, -1))) == (8.0, 4.0, 12.0)
    with pytest.raises(ValueError, match="too few"):
        median_interval_ranks(5)
