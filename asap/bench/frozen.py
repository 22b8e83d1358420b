"""Frozen-layer benchmark: a trained Sinkhorn teacher against what replaces it without retraining.

Variants, all sharing the teacher's weights: the teacher itself, ASAP two-sided and one-sided (one
calibration), ASAP with the map removed (``f = 0``: what the map buys), truncated Sinkhorn (fewer
iterations) and softmax swapped in. Accuracy, plan fidelity and speed are measured in one process, and
speed is reported as ratios to the teacher and to fused softmax, measured side by side.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

import asap.compile as compiler
from asap.bench.fidelity import capture_layer_inputs, plan_fidelity
from asap.bench.timing import median_ms, random_qkv
from asap.nn import ASAP, attention_layers, with_normaliser
from asap.nn.normalisers import Normaliser


def frozen_variants(teacher: nn.Module, calib_loader: Iterable, **compile_options: Any) -> dict[str, nn.Module]:
    """The benchmark's models by variant name; ``compile_options`` go to :func:`asap.compile`."""
    n_iters = next(iter(attention_layers(teacher).values())).normaliser.n_iters
    two_sided = compiler.compile(teacher, calib_loader, two_sided=True, **compile_options)
    one_sided = copy.deepcopy(two_sided)
    for module in one_sided.modules():
        if isinstance(module, ASAP):
            module.two_sided = False
    return {
        "teacher": teacher,
        "asap": two_sided,
        "asap_one_sided": one_sided,
        "asap_no_map": compiler.without_dual_map(two_sided),
        f"sinkhorn_{max(1, n_iters // 3)}it": with_normaliser(teacher, "sinkhorn", n_iters=max(1, n_iters // 3)),
        "softmax": with_normaliser(teacher, "softmax"),
    }


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], max_batches: int | None = None) -> float:
    hits = total = 0
    for index, (inputs, labels) in enumerate(loader):
        if max_batches is not None and index == max_batches:
            break
        hits += (model(inputs).argmax(-1) == labels).sum().item()
        total += len(labels)
    return hits / total


def first_normaliser(model: nn.Module) -> Normaliser:
    return next(iter(attention_layers(model).values())).normaliser


def layer_latencies(
    models: dict[str, nn.Module], seq_lens: Sequence[int], batch: int, heads: int, head_dim: int, min_run_time: float
) -> dict[str, dict[int, float]]:
    """Median latency (ms) of one attention normaliser of each variant on the same random ``q, k, v``."""
    device = next(next(iter(models.values())).parameters()).device
    latencies: dict[str, dict[int, float]] = {name: {} for name in models}
    for seq_len in seq_lens:
        q, k, v = random_qkv(batch, heads, seq_len, head_dim, device)
        for name, model in models.items():
            latencies[name][seq_len] = median_ms(partial(first_normaliser(model), q, k, v), min_run_time)
    return latencies


def frozen_layer_benchmark(
    teacher: nn.Module,
    calib_loader: Iterable,
    test_loader: Iterable,
    seq_len: int,
    seq_lens: Sequence[int] = (256, 1024, 4096),
    latency_batch: int = 1,
    max_test_batches: int | None = None,
    fidelity_batches: int = 2,
    min_run_time: float = 0.5,
    **compile_options: Any,
) -> pd.DataFrame:
    """One row per variant: accuracy (and its ratio to the teacher), plan fidelity, per-layer latency at the
    model's ``seq_len`` and at ``seq_lens`` with ratios to the teacher and to softmax, and inference throughput."""
    teacher = teacher.eval()
    models = frozen_variants(teacher, calib_loader, **compile_options)
    layer = next(iter(attention_layers(teacher).values()))
    layer_inputs = capture_layer_inputs(teacher, test_loader, fidelity_batches)
    lengths = sorted({seq_len, *seq_lens})
    latencies = layer_latencies(models, lengths, latency_batch, layer.num_heads, layer.head_dim, min_run_time)
    test_batch = next(iter(test_loader))[0]

    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        row: dict[str, Any] = {"variant": name, "accuracy": accuracy(model, test_loader, max_test_batches)}
        row["eval_wall_s"] = time.perf_counter() - start
        row.update(plan_fidelity(model, teacher, layer_inputs))
        row["throughput_samples_per_s"] = len(test_batch) / median_ms(partial(model, test_batch), min_run_time) * 1e3
        for n in lengths:
            key = "model" if n == seq_len and n not in seq_lens else n
            row[f"latency_ms_n{key}"] = latencies[name][n]
            row[f"speedup_vs_teacher_n{key}"] = latencies["teacher"][n] / latencies[name][n]
            row[f"time_vs_softmax_n{key}"] = latencies[name][n] / latencies["softmax"][n]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["accuracy_vs_teacher"] = table["accuracy"] / table.loc[table.variant == "teacher", "accuracy"].item()
    teacher_throughput = table.loc[table.variant == "teacher", "throughput_samples_per_s"].item()
    table["throughput_vs_teacher"] = table["throughput_samples_per_s"] / teacher_throughput
    table.insert(1, "seq_len", seq_len)
    return table
