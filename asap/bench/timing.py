"""Side-by-side timing with warm-up and repeats (``torch.utils.benchmark``), never single-shot.

Every timing runs with an explicit thread count (``torch.utils.benchmark`` defaults to one thread whatever the
process uses), which the benchmarks record beside each number.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch.utils import benchmark


def timings_ms(
    fn: Callable[[], object], min_run_time: float = 0.5, grad: bool = False, threads: int = 1
) -> list[float]:
    """Wall times of ``fn()`` in milliseconds (one per timed block, averaged over its calls), after a warm-up
    call, over at least ``min_run_time`` s on ``threads`` threads (with autograd on when ``grad``, e.g. to time a
    training step)."""
    with torch.set_grad_enabled(grad):
        fn()  # warm-up: allocator, kernels, lazy initialisation
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return [seconds * 1e3 for seconds in measurement.times]


def median_ms(fn: Callable[[], object], min_run_time: float = 0.5, grad: bool = False, threads: int = 1) -> float:
    """Median of :func:`timings_ms`."""
    return statistics.median(timings_ms(fn, min_run_time, grad, threads))


def random_qkv(batch: int, heads: int, seq_len: int, head_dim: int, device: torch.device, seed: int = 0):
    """Queries, keys and values with unit-variance entries (scores of order 1, as in a trained layer)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, heads, seq_len, head_dim)
    return tuple(torch.randn(shape, generator=generator).to(device) for _ in range(3))
