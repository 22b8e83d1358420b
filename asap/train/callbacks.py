"""Training cost: wall time and peak memory of each optimisation step, logged and kept for the run record.

The peak is the steps' own (:class:`asap.memory.PeakMemory`): the most any step held above what the run held
when training began (imports, data, model), so that it compares attention variants rather than what every run
shares.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L
import torch

from asap.memory import PeakMemory
from asap.nn.online_map import OnlineDualMap


class StepCost(L.Callback):
    """Logs ``train/step_time_ms`` and ``train/step_peak_mem_mb``; :meth:`summary` gives the run's figures.

    The first ``warmup_steps`` steps (allocator and kernel warm-up) are left out of the median time; the peak
    memory is the largest over all steps.
    """

    def __init__(self, warmup_steps: int = 5) -> None:
        self.warmup_steps = warmup_steps
        self.step_times: list[float] = []
        self.step_peaks: list[float] = []
        self._start = 0.0
        self._memory: PeakMemory | None = None

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._sync(module)
        self._memory = PeakMemory(module.device, baseline_mb=PeakMemory.in_use_mb(module.device))

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._sync(module)
        self._memory.start()
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(module)
        elapsed_ms = (time.perf_counter() - self._start) * 1e3
        self.step_times.append(elapsed_ms)
        self.step_peaks.append(self._memory.stop())
        module.log("train/step_time_ms", elapsed_ms, on_step=True, on_epoch=False)
        module.log("train/step_peak_mem_mb", self.step_peaks[-1], on_step=True, on_epoch=False)

    def summary(self) -> dict[str, float]:
        if not self.step_times:
            raise RuntimeError("no training step was timed")
        timed = self.step_times[self.warmup_steps :] or self.step_times
        return {
            "steps": len(self.step_times),
            "step_time_ms_median": statistics.median(timed),
            "step_peak_mem_mb": max(self.step_peaks),
        }


class OnlineCalibration(L.Callback):
    """Scores the online dual maps (:mod:`asap.nn.online_map`) on every validation epoch: each map is solved
    from its moments at the epoch's start and scored on the validation batches (held-out R^2 and plan error,
    kept in its buffers and so in that epoch's checkpoint). A no-op for models without online maps, and for
    the sanity-check validation before any training step."""

    @staticmethod
    def _maps(module: L.LightningModule) -> list[OnlineDualMap]:
        return [m for m in module.modules() if isinstance(m, OnlineDualMap) and bool((m.count > 0).all())]

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for online in self._maps(module):
            online.start_scoring()

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for online in self._maps(module):
            online.finish_scoring()
            for head, (r2, error) in enumerate(zip(online.r2.tolist(), online.plan_error.tolist(), strict=True)):
                module.log(f"online_map/r2_head{head}", r2, reduce_fx="mean")
                module.log(f"online_map/plan_error_head{head}", error, reduce_fx="mean")
