"""Training cost: wall time per optimisation step and peak memory, logged and kept for the run record."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import lightning as L
import torch


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated by torch on ``device``; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


class StepCost(L.Callback):
    """Logs ``train/step_time_ms`` and ``train/peak_mem_mb``; :meth:`summary` gives the run's figures.

    The first ``warmup_steps`` steps (allocator and kernel warm-up) are left out of the median.
    """

    def __init__(self, warmup_steps: int = 5) -> None:
        self.warmup_steps = warmup_steps
        self.step_times: list[float] = []
        self._start = 0.0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._sync(module)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(module)
        elapsed_ms = (time.perf_counter() - self._start) * 1e3
        self.step_times.append(elapsed_ms)
        module.log("train/step_time_ms", elapsed_ms, on_step=True, on_epoch=False)
        module.log("train/peak_mem_mb", peak_memory_mb(module.device), on_step=True, on_epoch=False)

    def summary(self, device: torch.device) -> dict[str, float]:
        timed = self.step_times[self.warmup_steps :] or self.step_times
        return {
            "steps": len(self.step_times),
            "step_time_ms_median": statistics.median(timed) if timed else float("nan"),
            "peak_mem_mb": peak_memory_mb(device),
        }
