"""Side-by-side timing with warm-up and repeats, never single-shot.

Every timing runs with an explicit thread count (``torch.utils.benchmark`` defaults to one thread whatever the
process uses), which the benchmarks record beside each number.

:func:`interleaved_rounds` is the harness of every comparison: after a warm-up, each case is timed as one block
(a fixed number of calls, at least ``block_s`` seconds long) in each of ``rounds`` rounds, the cases of a round
one after another, starting one case later each round, so that a slow spell of a shared machine hits every case
alike. Each round's block is one independent measurement; a ratio of two cases is taken per round
(:meth:`RoundTimes.ratio_rounds`), which is what the verdict's order-statistic interval needs. A *noise-floor
pair* (one case timed twice, as two cases) measures what identical computations read apart.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from asap.results import per_round_ratio


def random_qkv(batch: int, heads: int, seq_len: int, head_dim: int, device: torch.device, seed: int = 0):
    """Queries, keys and values with unit-variance entries (scores of order 1, as in a trained layer)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, heads, seq_len, head_dim)
    return tuple(torch.randn(shape, generator=generator).to(device) for _ in range(3))


NOISE_FLOOR_SUFFIX = "#noise_floor"


@dataclass
class RoundTimes:
    """Per case the per-call time (ms) of its block in each round, the calls per block, the load average
    before and after, and the noise-floor pair's median per-round ratio (``None`` without one)."""

    rounds_ms: dict[str, list[float]]
    block_calls: dict[str, int]
    threads: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    noise_floor_ratio: float | None = None
    noise_floor_attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.rounds_ms[name])

    def iqr(self, name: str) -> float:
        q1, _, q3 = statistics.quantiles(self.rounds_ms[name], n=4)
        return q3 - q1

    def ratio_rounds(self, numerator: str, denominator: str) -> list[float]:
        """``t_numerator,r / t_denominator,r`` for each round ``r``."""
        return per_round_ratio({"rounds_ms": self.rounds_ms}, numerator, denominator)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds_ms": self.rounds_ms,
            "block_calls": self.block_calls,
            "threads": self.threads,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "noise_floor_ratio": self.noise_floor_ratio,
            "noise_floor_attempts": self.noise_floor_attempts,
            **self.extra,
        }


def _time_block(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def interleaved_rounds(
    calls: dict[str, Callable[[], object]],
    rounds: int = 15,
    block_s: float = 0.02,
    threads: int = 1,
    grad: bool = False,
    noise_floor: str | None = None,
    noise_floor_bounds: tuple[float, float] = (0.91, 1.10),
    noise_floor_reruns: int = 1,
    progress: bool = True,
) -> RoundTimes:
    """Time every case of ``calls`` in ``rounds`` interleaved rounds (module docstring). ``noise_floor`` names
    a case timed a second time as ``<name>#noise_floor``; while the pair's median ratio lies outside
    ``noise_floor_bounds`` the whole timing reruns, at most ``noise_floor_reruns`` times (the last attempt is
    kept, ``noise_floor_ratio`` tells whether it held). Progress, with an estimate of the time left, goes to
    stderr."""
    if rounds < 1 or not calls:
        raise ValueError(f"need at least one case and one round, got {len(calls)} cases, {rounds} rounds")
    if noise_floor is not None and noise_floor not in calls:
        raise ValueError(f"the noise-floor case {noise_floor!r} is not among the cases")
    cases = dict(calls)
    if noise_floor is not None:
        cases[noise_floor + NOISE_FLOOR_SUFFIX] = calls[noise_floor]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.set_grad_enabled(grad):
            for attempt in range(1, noise_floor_reruns + 2):
                times = _interleaved(cases, rounds, block_s, threads, progress)
                times.noise_floor_attempts = attempt
                if noise_floor is None:
                    return times
                ratio = statistics.median(times.ratio_rounds(noise_floor + NOISE_FLOOR_SUFFIX, noise_floor))
                times.noise_floor_ratio = ratio
                if noise_floor_bounds[0] <= ratio <= noise_floor_bounds[1]:
                    return times
                print(f"noise floor {ratio:.3f} outside {noise_floor_bounds}: timing again", file=sys.stderr)
            return times
    finally:
        torch.set_num_threads(previous_threads)


def _interleaved(
    cases: dict[str, Callable[[], object]], rounds: int, block_s: float, threads: int, progress: bool
) -> RoundTimes:
    load_before = os.getloadavg()
    block_calls = {}
    for name, fn in cases.items():
        fn()  # warm-up: allocator, kernels, lazy initialisation, compilation
        once = _time_block(fn, 1) / 1e3
        block_calls[name] = max(1, int(block_s / max(once, 1e-9)))
    names = list(cases)
    rounds_ms: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for index in range(rounds):
        for offset in range(len(names)):
            name = names[(index + offset) % len(names)]
            rounds_ms[name].append(_time_block(cases[name], block_calls[name]))
        if progress:
            elapsed = time.perf_counter() - start
            left = elapsed / (index + 1) * (rounds - index - 1)
            print(f"timing round {index + 1}/{rounds}: {elapsed:.0f} s, about {left:.0f} s left", file=sys.stderr)
    return RoundTimes(rounds_ms, block_calls, threads, load_before, os.getloadavg())
