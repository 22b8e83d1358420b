"""Speed and memory of one attention layer per method, against sequence length, and of a training step.

Latency is measured side by side in one process: every method of one length in the same interleaved rounds
(:func:`asap.bench.timing.interleaved_rounds`: warm-up, then one block per method in each of 15 rounds, median
and IQR over the rounds, per-round ratios, a noise-floor pair). Peak memory is measured
per case in a fresh subprocess, after a warm-up call of the same case (so that one-off library set-up and
compilation are not counted): on CUDA as torch's max allocated bytes, on CPU (Linux) as the process's peak resident set
above its size before the call (torch keeps no allocator statistics on CPU). On CPU the subprocess fixes
glibc's mmap threshold (``MALLOC_MMAP_THRESHOLD_``): every large tensor is then mapped on allocation and
unmapped when freed, so the resident set follows the live tensors instead of whatever the heap kept.

Methods (inference): fused softmax (SDPA); the Sinkhorn teacher with ``T`` iterations in each implementation:
``sinkhorn`` is the lean one (in place, ``2T + 1`` passes over the ``n x n`` scores; the teacher as the models
were trained), ``sinkhorn_flash`` the flash one (``2T + 1`` fused passes, ``O(n d)`` memory), ``sinkhorn_unrolled``
plain autograd through the iterations; 1-iteration Sinkhorn (lean, 3 passes: the cheapest truncation that is
still doubly stochastic in part); sliced transport (ESPFormer); ASAP with its dense reference path and with the
fused two-pass path, and ``asap_lse_fused``: ASAP with the row log-sum-exp features (``features="sliced+lse"``,
one more fused pass). Beside them: ``sinkhorn_auto`` and ``asap_auto``, what each normaliser's ``impl="auto"``
rule runs (``auto_vs_fastest``: the faster of the implementations it chooses among over the auto row); the
baselines ``sinkhorn_flash_v0`` and ``asap_fused_v0``, the kernels before the log-sum-exp-only pass (commit
ed7b2a8), so the gain is measured side by side; and three pieces: ``fused_pass`` (one biased fused attention
pass with values), ``lse_pass`` (the log-sum-exp-only pass of ASAP's column step) and ``dual_features`` (ASAP's
features and map), whose ratios ``r = lse_pass / fused_pass`` and ``phi = dual_features / fused_pass`` give the
pass-count limit of the strongest teacher over ASAP, :func:`pass_count_limit`. :func:`kernel_breakdown` says where
each method's time goes, operator by operator. Training: forward + backward of the same layer, and
``sinkhorn_online``: the lean teacher
with the update of an online dual map (:mod:`asap.nn.online_map`, ``L`` slices), the cost of learning ASAP's
map while the teacher trains. Every row carries its speed-up over each
teacher implementation and its time relative to softmax. At the ``compiled_seq_lens``, softmax, the lean and
flash teachers and fused ASAP also run under ``torch.compile`` (inductor, static shapes) as their own rows
(``<method>_compiled``), with their speed-up over eager. Timings run on ``threads`` threads, recorded in every
row.

Besides the reference shape (``B = 2, H = 4, d = 64``), :func:`speed_sweep` runs at the compiled models' own
shapes (``H``, ``d``, ``T`` and the operating point's ``L``), so that speed and accuracy come from the same
configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pandas as pd
import torch

from asap import ops
from asap.bench.timing import interleaved_rounds, random_qkv
from asap.memory import PeakMemory
from asap.nn.online_map import OnlineDualMap
from asap.ops import fused, masking
from asap.results import SPEED_AUTO_ROWS, SPEED_PIECES

INFERENCE = (
    "softmax",
    "sinkhorn",
    "sinkhorn_flash",
    "sinkhorn_unrolled",
    "sinkhorn_1it",
    "sliced",
    "asap_dense",
    "asap_fused",
    "asap_lse_fused",
    "sinkhorn_auto",
    "asap_auto",
    "sinkhorn_flash_v0",
    "asap_fused_v0",
    "fused_pass",
    "lse_pass",
    "dual_features",
)
# at the compiled models' shapes: all but the reference implementation and ESPFormer's L x n x n plans
MODEL_SHAPE_METHODS = tuple(name for name in INFERENCE if name not in ("sinkhorn_unrolled", "sliced"))
STREAMING = (  # never hold an n x n tensor
    "softmax",
    "sinkhorn_flash",
    "asap_fused",
    "asap_lse_fused",
    "fused_pass",
    "lse_pass",
    "dual_features",
)
BASELINES = ("sinkhorn_flash_v0", "asap_fused_v0")  # today's kernels' predecessors: timed, not measured for memory
# The implementations an "auto" row chooses among (its ``auto_vs_fastest``: the fastest of them over the auto row)
AUTO_FAMILIES = {"sinkhorn_auto": ("sinkhorn", "sinkhorn_flash"), "asap_auto": ("asap_dense", "asap_fused")}
COMPILED_SUFFIX = "_compiled"  # the method under torch.compile (inductor, static shapes), inference only
COMPILED = tuple(name + COMPILED_SUFFIX for name in ("softmax", "sinkhorn", "sinkhorn_flash", "asap_fused"))
TRAINING = ("softmax", "sinkhorn", "sinkhorn_online", "sinkhorn_flash", "sinkhorn_unrolled", "sliced")


MMAP_THRESHOLD_BYTES = 64 * 2**10  # tensors above this are mapped and unmapped one by one (see the docstring)


def streaming_methods(training: bool) -> tuple[str, ...]:
    """The methods that run at lengths where no ``n x n`` tensor fits (the sweep's long shape)."""
    return tuple(name for name in (TRAINING if training else INFERENCE) if name in STREAMING)


# Speed-up columns: each teacher implementation's latency over the row's (NaN where it did not run).
TEACHER_IMPLS = {
    "speedup_vs_teacher": "sinkhorn",
    "speedup_vs_flash": "sinkhorn_flash",
    "speedup_vs_unrolled": "sinkhorn_unrolled",
}


def _flash_sinkhorn_v0(q, k, v, n_iters: int):
    """The flash teacher's forward as of commit ed7b2a8, kept as a baseline row: every half-step a full fused
    pass whose output is discarded (inference, no padding)."""
    work = masking.potential_dtype(q.dtype)
    log_a = log_b = -torch.log(torch.tensor(float(q.shape[-2]), dtype=work))
    key_bias = k.new_zeros(k.shape[:-1], dtype=work)
    for _ in range(n_iters):
        query_bias = log_a - fused.biased_attention(q, k, k, key_bias)[1]
        key_bias = log_b - fused.biased_attention(k, q, q, query_bias)[1]
    return fused.biased_attention(q, k, v, key_bias)[0]


def _query_potentials_v0(x, y):
    """:func:`asap.ops.kantorovich.query_potentials_1d` as of commit ed7b2a8 (no padding): float32 sort keys
    packed by torch's bitwise operations, then numpy's sort."""
    x, y = x.contiguous(), y.contiguous()
    if x.dtype == torch.float32:
        bits = x.view(torch.int32)
        key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)
        packed = (key << 32) | torch.arange(x.shape[-1], dtype=torch.int64)
        x_order = torch.from_numpy(np.sort(packed.numpy(), axis=-1)) & 0xFFFFFFFF
    else:
        x_order = torch.from_numpy(np.argsort(x.numpy(), axis=-1))
    xs = x.gather(-1, x_order)
    ys = torch.from_numpy(np.sort(y.numpy(), axis=-1))
    increments = ys[..., :-1] * xs.diff(dim=-1)
    neg_u = torch.cat([torch.zeros_like(xs[..., :1]), increments.cumsum(dim=-1).neg_()], dim=-1)
    return masking.centred(torch.empty_like(xs).scatter_(-1, x_order, neg_u), None)


def _asap_fused_v0(q, k, v, directions, weights):
    """Fused ASAP as of commit ed7b2a8, kept as a baseline row: features projected by an einsum (a permuted
    view, which the sorts then copy), sort keys packed by torch, the map an einsum on the transposed features,
    and the column step a full fused pass whose output is discarded (inference, no padding, two-sided)."""
    scale = q.shape[-1] ** -0.25
    d = directions.to(q) * scale
    x, y = torch.einsum("...nd,dl->...ln", q, d), torch.einsum("...nd,dl->...ln", k, d)
    phi = _query_potentials_v0(x, y)
    mean_field = masking.centred(x * masking.masked_mean(y, None), None)
    features = torch.cat([phi, mean_field], dim=-2).mT
    f = torch.einsum("bhnl,l->bhn", features, weights.to(q))
    log_n = torch.log(torch.tensor(float(q.shape[-2]), dtype=f.dtype))
    g = -log_n - fused.biased_attention(k, q, q, f)[1]
    return fused.biased_attention(q, k, v, g)[0]


def pass_count_limit(lse_pass_ratio: float, features_ratio: float, n_iters: int) -> float:
    r"""The most the strongest teacher can take over ASAP if both run on the same fused passes:
    :math:`(2T r + 1) / (r + 1 + \varphi)`, with ``r`` the cost of a log-sum-exp-only pass and :math:`\varphi` that
    of the slice features, both over a full fused pass (the teacher: ``2T`` half-steps and an output pass; ASAP:
    a column step, a row pass and its features).

    >>> pass_count_limit(1.0, 0.0, 3), round(pass_count_limit(0.5, 0.0, 3), 2)
    (3.5, 2.67)
    """
    if lse_pass_ratio <= 0 or features_ratio < 0 or n_iters < 0:
        raise ValueError(f"need r > 0, phi >= 0, T >= 0; got {lse_pass_ratio}, {features_ratio}, {n_iters}")
    return (2 * n_iters * lse_pass_ratio + 1) / (lse_pass_ratio + 1 + features_ratio)


def derived_ratios(latency: dict[str, float], n_iters: int) -> dict[str, dict[str, float]]:
    """Per method, the columns read off one length's latencies (NaN where a method needed did not run):
    ``lse_pass_ratio`` r and ``features_ratio`` phi (the ``lse_pass`` and ``dual_features`` rows over
    ``fused_pass``), ``pass_limit`` (:func:`pass_count_limit`), and for an ``auto`` row ``auto_vs_fastest``: the
    fastest implementation it chooses among (:data:`AUTO_FAMILIES`) over the auto row (1: it chose the fastest).

    >>> derived_ratios({"sinkhorn": 2.0, "sinkhorn_flash": 1.0, "sinkhorn_auto": 1.25}, 3)["sinkhorn_auto"]
    {'lse_pass_ratio': nan, 'features_ratio': nan, 'pass_limit': nan, 'auto_vs_fastest': 0.8}
    """
    nan = float("nan")
    full = latency.get("fused_pass", nan)
    r, phi = latency.get("lse_pass", nan) / full, latency.get("dual_features", nan) / full
    limit = pass_count_limit(r, phi, n_iters) if r == r and phi == phi else nan
    columns = {}
    for name, milliseconds in latency.items():
        family = [latency[impl] for impl in AUTO_FAMILIES.get(name, ()) if impl in latency]
        fastest = min(family) / milliseconds if family else nan
        columns[name] = {"lse_pass_ratio": r, "features_ratio": phi, "pass_limit": limit, "auto_vs_fastest": fastest}
    return columns


def method(name: str, n_iters: int, slices: int, head_dim: int, training: bool) -> Callable:
    """``fn(q, k, v) -> out`` for one method; ASAP's map is a fixed random linear map (its cost, not its fit)."""
    directions = ops.slice_directions(head_dim, slices, seed=0)
    map_weights = {
        features: 0.1 * torch.randn(ops.num_dual_features(slices, features), generator=torch.Generator().manual_seed(0))
        for features in ops.DUAL_FEATURES
    }

    def asap_dual(q, k, features="sliced"):  # the map as asap.nn.dual_maps.linear_dual applies it
        return map_weights[features].to(q) @ ops.dual_features(q, k, directions, None, features).mT

    online_maps: dict[int, OnlineDualMap] = {}
    bias_generator = torch.Generator().manual_seed(1)

    def pass_bias(q):  # a random key bias, as a potential would be (the cost of a pass does not depend on it)
        return torch.randn(q.shape[:-1], generator=bias_generator).to(q.device)

    def asap(q, k, v, impl):
        if impl == "dense":
            return ops.c_transform_attention_matrix(q, k, asap_dual(q, k)) @ v
        return ops.fused_c_transform_attention(q, k, v, asap_dual(q, k))

    def teacher_with_online_map(q, k, v):  # the lean teacher, and its online map's update as in training
        heads = q.shape[1]
        online = online_maps.setdefault(heads, OnlineDualMap(heads, head_dim, slices).to(q.device))
        online.update(q, k, None, n_iters)
        return ops.sinkhorn_attention(q, k, v, n_iters, impl="lean")

    methods = {
        "softmax": lambda q, k, v: ops.softmax_attention(q, k, v),
        "sinkhorn": lambda q, k, v: ops.sinkhorn_attention(q, k, v, n_iters, impl="lean"),
        "sinkhorn_online": teacher_with_online_map,
        "sinkhorn_1it": lambda q, k, v: ops.sinkhorn_attention(q, k, v, 1, impl="lean"),
        "sinkhorn_flash": lambda q, k, v: ops.sinkhorn_attention(q, k, v, n_iters, impl="flash"),
        "sinkhorn_unrolled": lambda q, k, v: ops.sinkhorn_attention(q, k, v, n_iters, impl="unrolled"),
        "sliced": lambda q, k, v: ops.sliced_attention_matrix(q, k, directions) @ v,  # ESPFormer's published settings
        "asap_dense": lambda q, k, v: asap(q, k, v, "dense"),
        "asap_fused": lambda q, k, v: asap(q, k, v, "fused"),
        "asap_lse_fused": lambda q, k, v: ops.fused_c_transform_attention(q, k, v, asap_dual(q, k, "sliced+lse")),
        "sinkhorn_auto": lambda q, k, v: ops.sinkhorn_attention(q, k, v, n_iters, impl="auto"),
        "asap_auto": lambda q, k, v: asap(q, k, v, ops.asap_impl(q.shape[-2], q.device)),
        "sinkhorn_flash_v0": lambda q, k, v: _flash_sinkhorn_v0(q, k, v, n_iters),
        "asap_fused_v0": lambda q, k, v: _asap_fused_v0(q, k, v, directions, map_weights["sliced"]),
        # one biased attention pass with values, and the log-sum-exp-only pass (ASAP's column step): r, phi
        "fused_pass": lambda q, k, v: fused.biased_attention(q, k, v, pass_bias(q)),
        "lse_pass": lambda q, k, v: ops.biased_lse(k, q, pass_bias(q)),
        "dual_features": lambda q, k, v: asap_dual(q, k),
    }
    if name.endswith(COMPILED_SUFFIX):
        if training:
            raise ValueError(f"{name}: compiled methods are timed at inference only")
        return torch.compile(
            method(name.removesuffix(COMPILED_SUFFIX), n_iters, slices, head_dim, False), dynamic=False
        )
    fn = methods[name]
    if not training:
        return fn

    def step(q, k, v):
        q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
        fn(q, k, v).square().mean().backward()

    return step


def run_case(
    name: str,
    seq_len: int,
    batch: int,
    heads: int,
    head_dim: int,
    n_iters: int,
    slices: int,
    training: bool,
    device: str,
) -> float:
    """Peak memory (MB) of one call, beyond its inputs."""
    fn = method(name, n_iters, slices, head_dim, training)
    q, k, v = random_qkv(batch, heads, seq_len, head_dim, torch.device(device))
    with torch.set_grad_enabled(training):
        fn(q, k, v)  # warm-up: library set-up and compilation are not the case's; its tensors are unmapped again
    peak = PeakMemory(torch.device(device))
    peak.start()
    with torch.set_grad_enabled(training):
        fn(q, k, v)
    return peak.stop()


def peak_memory_mb(name: str, seq_len: int, training: bool, **shape) -> float:
    """:func:`run_case` in a fresh process, so each case's peak is its own."""
    arguments = [f"--{key.replace('_', '-')}={value}" for key, value in shape.items()]
    command = [sys.executable, "-m", "asap.bench.speed", name, str(seq_len), *arguments]
    if training:
        command.append("--training")
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES)}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(
            f"the peak-memory case {name} at n={seq_len} failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    return float(result.stdout.strip().splitlines()[-1])


def speed_sweep(
    seq_lens: Sequence[int] = (256, 1024, 4096),
    batch: int = 2,
    heads: int = 4,
    head_dim: int = 64,
    n_iters: int = 3,
    slices: int = 16,
    sliced_max_len: int = 1024,
    dense_max_len: int = 4096,
    training: bool = False,
    min_run_time: float = 0.5,
    rounds: int = 15,
    device: str = "cpu",
    threads: int = 1,
    methods: Sequence[str] | None = None,
    measure_memory: bool = True,
    shape_label: str = "reference",
    compiled_seq_lens: Sequence[int] = (),
) -> pd.DataFrame:
    """One row per (method, n): latency (median over ``rounds`` interleaved rounds of
    :func:`asap.bench.timing.interleaved_rounds`, ``min_run_time`` s per case in all) and its IQR, peak memory
    (unless ``measure_memory`` is off: then empty), latency ratios to each teacher implementation, the median
    per-round speed-up over the strongest teacher (the fastest implementation timed at that n, compiled ones
    included) and time relative to softmax, the threads used, the noise-floor ratio (softmax timed twice), and
    every round's time (``latency_runs_ms``, a list). ``shape_label`` names the shape (``reference`` or a
    compiled model). At ``compiled_seq_lens`` (inference) the chosen methods that have a :data:`COMPILED` form run
    compiled too, with their speed-up over eager."""
    names = methods or (TRAINING if training else INFERENCE)
    if "softmax" not in names:
        raise ValueError(f"the ratios need softmax among the methods, got {names}")
    valid = (*INFERENCE, *TRAINING) if training else INFERENCE  # sinkhorn_online: a training step only
    unknown = set(names) - set(valid)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {tuple(dict.fromkeys(valid))}")
    if training and compiled_seq_lens:
        raise ValueError("compiled methods are timed at inference only")
    shape = dict(batch=batch, heads=heads, head_dim=head_dim, n_iters=n_iters, slices=slices, device=device)
    compiled = tuple(name + COMPILED_SUFFIX for name in names if name + COMPILED_SUFFIX in COMPILED)
    rows = []
    for seq_len in seq_lens:
        q, k, v = random_qkv(batch, heads, seq_len, head_dim, torch.device(device))
        cases = {}
        for name in (*names, *(compiled if seq_len in compiled_seq_lens else ())):
            if name == "sliced" and seq_len > sliced_max_len:
                continue  # L x n x n tensors: out of reach at this length
            if name.removesuffix(COMPILED_SUFFIX) not in STREAMING and seq_len > dense_max_len:
                continue  # n x n tensors: out of reach at this length
            cases[name] = partial(method(name, n_iters, slices, head_dim, training), q, k, v)
        print(f"{shape_label}, n={seq_len}: {len(cases)} methods in {rounds} interleaved rounds", file=sys.stderr)
        times = interleaved_rounds(
            cases, rounds, min_run_time / rounds, threads, grad=training, noise_floor="softmax", progress=False
        )
        latency = {name: times.median(name) for name in cases}
        derived = derived_ratios(latency, n_iters)
        teachers = [name for name in cases if name.removesuffix(COMPILED_SUFFIX) in TEACHER_IMPLS.values()]
        strongest = min(teachers, key=latency.__getitem__) if teachers else None
        for name, milliseconds in latency.items():
            # pieces, auto rows (another row's computation) and baselines: their time only
            skip_memory = name in (*SPEED_PIECES, *SPEED_AUTO_ROWS, *BASELINES)
            memory = peak_memory_mb(name, seq_len, training, **shape) if measure_memory and not skip_memory else None
            rows.append(
                {
                    "mode": "training" if training else "inference",
                    "shape": shape_label,
                    "method": name,
                    "seq_len": seq_len,
                    "latency_ms": milliseconds,
                    "latency_iqr_ms": times.iqr(name) if rounds > 1 else float("nan"),
                    "peak_mem_mb": memory,
                    **{
                        column: latency[teacher] / milliseconds if teacher in latency else float("nan")
                        for column, teacher in TEACHER_IMPLS.items()
                    },
                    "strongest_teacher": strongest,
                    "speedup_vs_strongest": statistics.median(times.ratio_rounds(strongest, name))
                    if strongest
                    else float("nan"),
                    "time_vs_softmax": statistics.median(times.ratio_rounds(name, "softmax")),
                    **derived[name],
                    "speedup_vs_eager": latency.get(name.removesuffix(COMPILED_SUFFIX), float("nan")) / milliseconds
                    if name.endswith(COMPILED_SUFFIX)
                    else float("nan"),
                    **shape,
                    "timing_threads": threads,
                    "timing_rounds": rounds,
                    "block_calls": times.block_calls[name],
                    "noise_floor_ratio": times.noise_floor_ratio,
                    "load_before": times.load_before[0],
                    "load_after": times.load_after[0],
                    "latency_runs_ms": times.rounds_ms[name],
                }
            )
    return pd.DataFrame(rows)


KERNEL_METHODS = {  # what the kernel breakdown profiles: softmax, each eager teacher implementation, ASAP
    "inference": ("softmax", "sinkhorn", "sinkhorn_flash", "asap_fused", "fused_pass", "lse_pass", "dual_features"),
    "training": ("softmax", "sinkhorn", "sinkhorn_flash"),
}


def kernel_breakdown(
    seq_len: int,
    batch: int,
    heads: int,
    head_dim: int,
    n_iters: int,
    slices: int,
    training: bool = False,
    device: str = "cpu",
    threads: int = 1,
    calls: int = 5,
    top: int = 8,
    shape_label: str = "reference",
) -> pd.DataFrame:
    """Where each method's time goes (``torch.profiler``, CPU self time): per method of :data:`KERNEL_METHODS`,
    its ``top`` operators by self time (the rest summed as ``other``), each with its calls and self time per
    method call (ms) and its share of the method's total, after a warm-up call, over ``calls`` calls."""
    from torch.profiler import ProfilerActivity, profile

    mode = "training" if training else "inference"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    q, k, v = random_qkv(batch, heads, seq_len, head_dim, torch.device(device))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for name in KERNEL_METHODS[mode]:
            fn = method(name, n_iters, slices, head_dim, training)
            with torch.set_grad_enabled(training):
                fn(q, k, v)  # warm-up: set-up is not the method's
                with profile(activities=activities) as profiler:
                    for _ in range(calls):
                        fn(q, k, v)
            operators = sorted(profiler.key_averages(), key=lambda event: -event.self_cpu_time_total)
            total_us = sum(event.self_cpu_time_total for event in operators)
            kept = [(event.key, event.count, event.self_cpu_time_total) for event in operators[:top]]
            rest = operators[top:]
            if rest:
                kept.append(("other", sum(e.count for e in rest), sum(e.self_cpu_time_total for e in rest)))
            for operator, count, self_us in kept:
                rows.append(
                    {
                        "mode": mode,
                        "shape": shape_label,
                        "method": name,
                        "seq_len": seq_len,
                        "operator": operator,
                        "calls_per_call": count / calls,
                        "self_ms_per_call": self_us / calls / 1e3,
                        "share": self_us / total_us if total_us else float("nan"),
                        "batch": batch,
                        "heads": heads,
                        "head_dim": head_dim,
                        "n_iters": n_iters,
                        "slices": slices,
                        "device": device,
                        "timing_threads": threads,
                    }
                )
    finally:
        torch.set_num_threads(previous_threads)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="one memory case (used by peak_memory_mb)")
    parser.add_argument("name")
    parser.add_argument("seq_len", type=int)
    for key in ("batch", "heads", "head-dim", "n-iters", "slices"):
        parser.add_argument(f"--{key}", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--training", action="store_true")
    args = parser.parse_args()
    peak = run_case(
        args.name,
        args.seq_len,
        args.batch,
        args.heads,
        args.head_dim,
        args.n_iters,
        args.slices,
        args.training,
        args.device,
    )
    print(json.dumps(peak))


if __name__ == "__main__":
    main()
