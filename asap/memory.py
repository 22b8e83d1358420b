"""Peak memory of one piece of work, not of the whole process.

On CUDA: torch's allocator peak, reset before the work. On CPU (Linux), torch keeps no allocator statistics, so
the process's resident high-water mark (``VmHWM``) is reset to the current resident size through
``/proc/self/clear_refs`` and read afterwards: the work's own peak is the difference. The lifetime peak
(``ru_maxrss``) would include importing torch and loading data, which can dwarf what the work itself needs.
"""

from __future__ import annotations

import torch


def status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (Linux), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss_mb() -> float:
    """Reset the process's peak resident set (``VmHWM``) to its current size, which it returns (MB)."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    return status_mb("VmRSS")


class PeakMemory:
    """The peak (MB) that work adds above a baseline: ``start()`` before the work, ``stop()`` after.

    The baseline is what was in use at ``start()``, or a fixed ``baseline_mb`` (e.g. what a training run held
    before its first step: on CPU, memory freed by earlier steps often stays resident, so a per-step baseline
    would hide what the steps need).
    """

    def __init__(self, device: torch.device, baseline_mb: float | None = None) -> None:
        self.device = torch.device(device)
        self.baseline_mb = baseline_mb
        self._base = 0.0

    @staticmethod
    def in_use_mb(device: torch.device) -> float:
        """Memory in use now: torch's allocated bytes on CUDA, the resident set on CPU."""
        device = torch.device(device)
        if device.type == "cuda":
            return torch.cuda.memory_allocated(device) / 2**20
        return status_mb("VmRSS")

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            current = self.in_use_mb(self.device)
        else:
            current = reset_peak_rss_mb()
        self._base = current if self.baseline_mb is None else self.baseline_mb

    def stop(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self._base
        return status_mb("VmHWM") - self._base
