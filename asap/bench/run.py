"""The benchmark jobs behind ``asap bench``: from files (a checkpoint, an operating point) to a table on disk.

Each job writes its CSV atomically with a ``.provenance.json`` beside it (:func:`asap.provenance.write_table`)
and returns the table, so the command line, the workflow and a Python user share one code path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from asap.provenance import provenance, write_json_atomic, write_table
from asap.results import predictions_path, timings_path


def model_sequence_length(model: nn.Module, datamodule) -> int:
    """Tokens the model attends over: patches (+ class token) for a ViT, the median test-batch width (+ class
    token) for text."""
    if datamodule.modality == "vision":
        return model.patch_embed.num_patches + model.num_prefix_tokens
    widths = [batch[0].shape[1] for batch in datamodule.test_dataloader()]
    return int(sorted(widths)[len(widths) // 2]) + (getattr(model, "cls_token", None) is not None)


def online_student(checkpoint: str | Path, teacher: nn.Module, data_dir: str | Path = "data") -> nn.Module:
    """The model compiled from the online maps of ``checkpoint``, a run of the same teacher with online maps.

    Its teacher weights must equal ``teacher``'s (online maps never touch training), else the comparison with
    post-hoc calibration would compare two teachers: a ``ValueError`` names the first differing tensors."""
    from asap.compiler import compile_online
    from asap.train import load_teacher

    online = load_teacher(checkpoint, data_dir).model
    state, reference = online.state_dict(), teacher.state_dict()
    differing = [key for key, value in reference.items() if not value.equal(state[key])]
    if differing:
        raise ValueError(f"{checkpoint} was trained to other weights than the teacher: {differing[:3]}")
    return compile_online(online)


def read_operating_point(path: str | Path):
    """The :class:`~asap.compiler.OperatingPoint` in a JSON written by ``asap compile --operating-point``."""
    from asap.compiler import OperatingPoint

    record = json.loads(Path(path).read_text())
    if "operating_point" not in record:
        raise ValueError(f"{path} holds no operating point (write one with asap compile --operating-point)")
    return OperatingPoint(**record["operating_point"])


def _with_run(table: pd.DataFrame, run: dict[str, Any]) -> pd.DataFrame:
    table.insert(0, "task", run["task"])
    table.insert(1, "teacher", run["variant"])
    table.insert(2, "seed", run["seed"])
    return table


def frontier_benchmark(
    checkpoint: str | Path,
    operating_point: str | Path,
    out: str | Path,
    *,
    data_dir: str | Path = "data",
    map: str = "linear",  # noqa: A002 - the dual map's name, as everywhere in asap.compiler
    num_batches: int = 8,
    seed: int = 0,
    seq_lens: Sequence[int] = (1024,),
    slice_factors: Sequence[float] | None = None,
    one_sided: str = "all",
    threads: int = 1,
    max_test_batches: int | None = None,
    min_run_time: float = 0.5,
    rounds: int = 15,
    compiled: bool = True,
    online_checkpoint: str | Path | None = None,
) -> pd.DataFrame:
    """The accuracy-cost frontier of a Sinkhorn checkpoint (:func:`asap.bench.accuracy_cost_frontier`) around
    the operating point chosen by ``asap compile``; ASAP at L = factor x head dim for each of
    ``slice_factors`` (default d/4 ... 4d); ``online_checkpoint`` adds the model compiled from a twin run's
    online maps (``asap_online``)."""
    from asap.bench.frontier import accuracy_cost_frontier, frontier_slices
    from asap.compiler.operating_points import teacher_head_dim
    from asap.data.base import constant_predictor_accuracy
    from asap.train import load_teacher

    loaded = load_teacher(checkpoint, data_dir)
    teacher, datamodule = loaded.model, loaded.datamodule
    point = read_operating_point(operating_point)
    slices = frontier_slices(teacher_head_dim(teacher), slice_factors, point) if slice_factors else None
    online = online_student(online_checkpoint, teacher, data_dir) if online_checkpoint else None
    table = accuracy_cost_frontier(
        teacher,
        datamodule.train_dataloader(),
        datamodule.test_dataloader(),
        point,
        seq_len=model_sequence_length(teacher, datamodule),
        seq_lens=seq_lens,
        min_run_time=min_run_time,
        threads=threads,
        rounds=rounds,
        compiled=compiled,
        max_test_batches=max_test_batches,
        slices=slices,
        one_sided=one_sided,
        online=online,
        map=map,
        num_batches=num_batches,
        seed=seed,
    )
    splits = datamodule.datasets
    table["constant_predictor_acc"] = constant_predictor_accuracy(splits["train"], splits["test"])
    table = _with_run(table, loaded.run)
    options = {"map": map, "num_batches": num_batches, "seed": seed, "seq_lens": list(seq_lens), "rounds": rounds}
    info = {"checkpoint": str(checkpoint), "operating_point": point.to_dict(), "options": options, "run": loaded.run}
    timings, predicted = table.attrs.pop("timings"), table.attrs.pop("predictions")
    table.attrs.clear()
    # every timed round, for the verdict's per-round speed-ups and a look at the noise behind each median; the
    # per-example predictions, for its accuracy intervals (written first: the table marks the job done)
    write_json_atomic(timings_path(out), {**info, **timings, "provenance": provenance()})
    predicted.save(predictions_path(out))
    write_table(table, out, info)
    return table


def downstream_benchmark(
    checkpoint: str | Path,
    out: str | Path,
    *,
    operating_point: str | Path | None = None,
    data_dir: str | Path = "data",
    map: str = "linear",  # noqa: A002
    seed: int = 0,
    fit: str = "kl",
    calib_sizes: Sequence[int] = (1, 2, 4, 8, 16),
    length_edges: Sequence[int] = (128, 256, 384, 513),
    max_test_batches: int | None = None,
) -> pd.DataFrame:
    """Accuracy against the number of calibration batches and, on text, against test length after calibrating
    on short sequences only (:mod:`asap.bench.downstream`), at the operating point of ``asap compile`` (or 16
    random slices, two-sided, without one)."""
    from asap.bench.downstream import calibration_curve, length_generalisation
    from asap.compiler import OperatingPoint
    from asap.train import load_teacher

    loaded = load_teacher(checkpoint, data_dir)
    teacher, datamodule = loaded.model, loaded.datamodule
    point = read_operating_point(operating_point) if operating_point else OperatingPoint(16, "random")
    options = dict(
        map=map, seed=seed, slices=point.slices, directions=point.directions, two_sided=point.two_sided, fit=fit
    )
    train_loader, test_loader = datamodule.train_dataloader(), datamodule.test_dataloader()
    curve = calibration_curve(
        teacher, train_loader, test_loader, sizes=calib_sizes, max_test_batches=max_test_batches, **options
    )
    tables = [curve.assign(experiment="calibration")]
    if datamodule.modality == "text":  # calibrate on the shorter half of the lengths, test every length bucket
        low, high = min(length_edges), max(length_edges)
        buckets = list(zip(length_edges[:-1], length_edges[1:], strict=True))
        lengths = length_generalisation(teacher, train_loader, test_loader, low + (high - low) // 2, buckets, **options)
        tables.append(lengths.assign(experiment="length"))
    table = _with_run(pd.concat(tables, ignore_index=True), loaded.run)
    info = {"checkpoint": str(checkpoint), "operating_point": point.to_dict(), "options": options, "run": loaded.run}
    write_table(table, out, info)
    return table


SWEEP_OPTIONS = (
    "seq_lens",
    "batch",
    "heads",
    "head_dim",
    "n_iters",
    "slices",
    "sliced_max_len",
    "dense_max_len",
    "min_run_time",
    "rounds",
)  # the options of asap.bench.speed.speed_sweep that the speed job passes on (their defaults live there)


def speed_benchmark(
    out: str | Path,
    *,
    raw: str | Path | None = None,
    kernels: str | Path | None = None,
    training: bool = False,
    threads: Sequence[int] = (1,),
    thread_seq_lens: Sequence[int] | None = None,
    operating_points: Sequence[str | Path] = (),
    model_seq_lens: Sequence[int] = (1024,),
    compiled_seq_lens: Sequence[int] = (),
    long_seq_lens: Sequence[int] = (),
    long_batch: int = 1,
    long_heads: int = 1,
    device: str | None = None,
    **sweep: Any,
) -> pd.DataFrame:
    """Latency and peak memory of every method against n (:func:`asap.bench.speed.speed_sweep`, which takes
    ``sweep``: any of :data:`SWEEP_OPTIONS`), one sweep per thread count (the first at every n, the others at
    ``thread_seq_lens`` only when given, without memory or compiled rows: a second thread count answers how a
    method scales at one n, and repeating the whole sweep doubles its cost); at ``long_seq_lens`` the streaming
    methods only (at a small batch); at inference, the compiled models' shapes too (``operating_points``: the
    JSON of ``asap compile``). ``raw`` keeps every timed repeat. ``kernels``: a CSV of where each method's time goes
    (:func:`asap.bench.speed.kernel_breakdown`) at the reference shape and each model shape, at the first thread
    count and the first of ``thread_seq_lens`` (else of the lengths) and of ``model_seq_lens``. ``device``
    defaults to CUDA when there is one."""
    import inspect

    import torch

    from asap.bench.speed import MODEL_SHAPE_METHODS, kernel_breakdown, speed_sweep, streaming_methods

    unknown = sorted(set(sweep) - set(SWEEP_OPTIONS))
    if unknown:
        raise ValueError(f"unknown speed options {unknown}; valid: {list(SWEEP_OPTIONS)}")
    parameters = inspect.signature(speed_sweep).parameters
    options = {name: sweep.get(name, parameters[name].default) for name in SWEEP_OPTIONS}
    options["seq_lens"] = list(options["seq_lens"])
    options["device"] = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if thread_seq_lens is not None and not set(thread_seq_lens) <= set(options["seq_lens"]):
        raise ValueError(f"thread_seq_lens {list(thread_seq_lens)} must be among the seq_lens {options['seq_lens']}")
    tables = []
    for index, count in enumerate(threads):
        first = index == 0  # the full sweep, with memory and the compiled rows
        seq_lens = options["seq_lens"] if first or thread_seq_lens is None else list(thread_seq_lens)
        tables.append(
            speed_sweep(
                training=training,
                threads=count,
                measure_memory=first,
                compiled_seq_lens=compiled_seq_lens if first and not training else [],
                **{**options, "seq_lens": seq_lens},
            )
        )
    shapes = []
    if long_seq_lens:  # lengths where only the streaming methods fit
        label = f"long (B={long_batch}, H={long_heads})"
        shapes.append({"label": label, "batch": long_batch, "heads": long_heads})
        long_options = {**options, "seq_lens": list(long_seq_lens), "batch": long_batch, "heads": long_heads}
        methods = streaming_methods(training)
        tables.append(
            speed_sweep(training=training, threads=threads[-1], methods=methods, shape_label=label, **long_options)
        )
    if not training:  # ASAP runs at inference only: the compiled models' shapes are inference cases
        for path in operating_points:
            record = json.loads(Path(path).read_text())
            shape = dict(
                heads=record["heads"],
                head_dim=record["head_dim"],
                n_iters=record["teacher_iterations"],
                slices=record["operating_point"]["slices"],
            )
            shapes.append({"label": f"{record['task']}/{record['variant']}", **shape})
            model_options = {**options, **shape, "seq_lens": list(model_seq_lens), "threads": threads[0]}
            tables.append(
                speed_sweep(
                    methods=MODEL_SHAPE_METHODS, measure_memory=False, shape_label=shapes[-1]["label"], **model_options
                )
            )
    table = pd.concat(tables, ignore_index=True)
    info = {"options": options, "training": training, "model_shapes": shapes}
    if kernels:
        reference_n = (thread_seq_lens or options["seq_lens"])[0]
        shape_keys = ("batch", "heads", "head_dim", "n_iters", "slices")
        profiles = [
            kernel_breakdown(
                reference_n,
                **{key: options[key] for key in shape_keys},
                training=training,
                device=options["device"],
                threads=threads[0],
            )
        ]
        for shape in shapes if not training else []:
            if shape["label"].startswith("long"):
                continue
            model_shape = {key: shape.get(key, options[key]) for key in shape_keys}
            profiles.append(
                kernel_breakdown(
                    model_seq_lens[0],
                    **model_shape,
                    device=options["device"],
                    threads=threads[0],
                    shape_label=shape["label"],
                )
            )
        write_table(pd.concat(profiles, ignore_index=True), kernels, info)
    if raw:  # every timed repeat, for a look at the noise behind each median
        write_json_atomic(raw, {**info, "cases": table.to_dict("records"), "provenance": provenance()})
    table["latency_runs_ms"] = table.latency_runs_ms.map(json.dumps)  # every round's time, committed in the CSV
    write_table(table, out, info)
    return table
