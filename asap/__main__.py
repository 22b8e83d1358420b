"""asap's command line.

python -m asap train --task mnist --variant sinkhorn --seed 0 [--set trainer.max_epochs=1]
python -m asap compile --checkpoint runs/cpu/mnist/sinkhorn/seed0/checkpoints/best.ckpt --out mnist_asap.pt
python -m asap bench frozen --checkpoint ... --out results/cpu/bench/frozen/mnist.csv
python -m asap bench downstream --checkpoint ... --out results/cpu/bench/downstream/mnist.csv
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _train(args: argparse.Namespace) -> None:
    from asap.train import apply_overrides, load_task_config, run_config, train

    task_config = apply_overrides(load_task_config(args.task, args.profile, args.config), args.set)
    config = run_config(task_config, args.variant, args.seed)
    if args.no_wandb:
        config.setdefault("logging", {})["wandb"] = False
    run = Path(args.task) / args.variant / f"seed{args.seed}"
    result = Path(args.result or Path(args.results_dir) / args.profile / "train" / f"{run}.json")
    run_dir = Path(args.run_dir or Path(args.runs_dir) / args.profile / run)
    record = train(config, run_dir, result, args.data_dir)
    print(json.dumps({"result": str(result), **record["metrics"], **record["cost"]}, indent=2))


def _data(args: argparse.Namespace) -> None:
    from asap.data import create_datamodule
    from asap.provenance import provenance, write_json_atomic
    from asap.train import load_task_config

    data = load_task_config(args.task, args.profile).get("data", {})
    datamodule = create_datamodule(args.task, data_dir=args.data_dir, **data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    sizes = {split: len(dataset) for split, dataset in datamodule.datasets.items()}
    write_json_atomic(
        args.out, {"task": args.task, "profile": args.profile, "sizes": sizes, "data": data, "provenance": provenance()}
    )
    print(f"{args.task}: {sizes}")


def _compile_options(args: argparse.Namespace) -> dict:
    return {
        "slices": args.slices,
        "map": args.map,
        "directions": args.directions,
        "num_batches": args.calib_batches,
        "seed": args.calib_seed,
    }


def _compile(args: argparse.Namespace) -> None:
    if not args.checkpoint:
        raise SystemExit("compile needs --checkpoint")
    import asap.compile as compiler
    from asap.bench import load_teacher
    from asap.nn import attention_layers

    teacher = load_teacher(args.checkpoint, args.data_dir)
    options = _compile_options(args)
    student = compiler.compile(
        teacher.model, teacher.datamodule.train_dataloader(), two_sided=not args.one_sided, **options
    )
    layer = next(iter(attention_layers(student).values()))
    model_args = {
        **teacher.model_args,
        "attention": "asap",
        "attention_options": {
            "num_slices": options["slices"] or layer.head_dim,
            "two_sided": not args.one_sided,
            "dual_map": args.map,
        },
    }
    metadata = {"teacher_checkpoint": str(args.checkpoint), "run": teacher.run, "compile": options}
    compiler.save_compiled(student, args.out, model_args, metadata)
    report = compiler.calibration_report(student)
    if args.report:
        report.assign(task=teacher.run["task"], seed=teacher.run["seed"]).to_csv(args.report, index=False)
    print(report.to_string(index=False))
    print(f"compiled model written to {args.out}")


def _write_table(table, out: Path, info: dict) -> None:
    """CSV written atomically, with a ``.provenance.json`` beside it."""
    from asap.provenance import provenance, write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    table.to_csv(partial, index=False)
    partial.replace(out)
    write_json_atomic(out.with_suffix(".provenance.json"), {**info, "provenance": provenance()})
    print(table.to_string(index=False))


def _speed(args: argparse.Namespace) -> None:
    from asap.bench.speed import speed_sweep
    from asap.provenance import provenance, write_json_atomic

    options = dict(
        seq_lens=args.seq_lens,
        batch=args.batch,
        heads=args.heads,
        head_dim=args.head_dim,
        n_iters=args.n_iters,
        slices=args.slices or 16,
        sliced_max_len=args.sliced_max_len,
        dense_max_len=args.dense_max_len,
        min_run_time=args.min_run_time,
        device="cuda" if torch_cuda() else "cpu",
    )
    table = speed_sweep(training=args.training, **options)
    info = {"options": options, "training": args.training}
    if args.raw:  # every timed repeat, for a look at the noise behind each median
        write_json_atomic(Path(args.raw), {**info, "cases": table.to_dict("records"), "provenance": provenance()})
    _write_table(table.drop(columns="latency_runs_ms"), Path(args.out), info)


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bench(args: argparse.Namespace) -> None:
    if args.kind == "speed":
        return _speed(args)
    if not args.checkpoint:
        raise SystemExit(f"bench {args.kind} needs --checkpoint")
    from asap.bench import (
        calibration_curve,
        frozen_layer_benchmark,
        iteration_sweep,
        length_generalisation,
        load_teacher,
        slice_sweep,
    )

    loaded = load_teacher(args.checkpoint, args.data_dir)
    teacher, datamodule, run = loaded.model, loaded.datamodule, loaded.run
    options = _compile_options(args)
    test_loader = datamodule.test_dataloader()
    if args.kind == "frozen":
        seq_len = _sequence_length(teacher, datamodule)
        table = frozen_layer_benchmark(
            teacher,
            datamodule.train_dataloader(),
            test_loader,
            seq_len,
            seq_lens=args.seq_lens,
            max_test_batches=args.max_test_batches,
            min_run_time=args.min_run_time,
            **options,
        )
    else:
        options.pop("num_batches")
        tables = [
            calibration_curve(
                teacher,
                datamodule.train_dataloader(),
                test_loader,
                sizes=args.calib_sizes,
                max_test_batches=args.max_test_batches,
                **options,
            ).assign(experiment="calibration")
        ]
        tables.append(
            iteration_sweep(teacher, test_loader, max_test_batches=args.max_test_batches).assign(
                experiment="iterations"
            )
        )
        sweep_options = {key: value for key, value in options.items() if key != "slices"}
        tables.append(
            slice_sweep(
                teacher,
                datamodule.train_dataloader(),
                test_loader,
                slices=args.slice_sweep,
                max_test_batches=args.max_test_batches,
                **sweep_options,
            ).assign(experiment="slices")
        )
        if datamodule.modality == "text":
            low, high = min(args.length_edges), max(args.length_edges)
            buckets = list(zip(args.length_edges[:-1], args.length_edges[1:], strict=True))
            calib_max_len = low + (high - low) // 2
            tables.append(
                length_generalisation(
                    teacher, datamodule.train_dataloader(), test_loader, calib_max_len, buckets, **options
                ).assign(experiment="length")
            )
        import pandas as pd

        table = pd.concat(tables, ignore_index=True)
    table.insert(0, "task", run["task"])
    table.insert(1, "seed", run["seed"])
    _write_table(table, Path(args.out), {"checkpoint": str(args.checkpoint), "options": options, "run": run})


def _sequence_length(model, datamodule) -> int:
    """Tokens the model attends over: patches (+ class token) for a ViT, the typical batch width for text."""
    if datamodule.modality == "vision":
        return model.patch_embed.num_patches + model.num_prefix_tokens
    widths = [batch[0].shape[1] for batch in datamodule.test_dataloader()]
    return int(sorted(widths)[len(widths) // 2])


def _report(args: argparse.Namespace) -> None:
    from asap.report import build_report

    for path in build_report(args.results, args.out):
        print(path)


def _add_compile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a Sinkhorn run's checkpoint (best.ckpt)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--slices", type=int, default=None, help="slices per head (default: head dim)")
    parser.add_argument("--map", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--directions", default="random", choices=["random", "pca"])
    parser.add_argument("--calib-batches", type=int, default=8)
    parser.add_argument("--calib-seed", type=int, default=0)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = argparse.ArgumentParser(prog="asap", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one (task, variant, seed)")
    train.add_argument("--task", required=True)
    train.add_argument("--variant", required=True, help="softmax, sinkhorn or sliced")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--profile", default="cpu", help="config set under experiments/ (cpu, paper, ...)")
    train.add_argument("--config", help="a task config file instead of experiments/<profile>/<task>.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-3")
    train.add_argument("--data-dir", default="data")
    train.add_argument("--runs-dir", default="runs", help="checkpoints and logs")
    train.add_argument("--results-dir", default="results")
    train.add_argument("--result", help="path of the run record (default results/<profile>/train/...)")
    train.add_argument("--run-dir", help="checkpoints and logs of this run (default <runs-dir>/<profile>/...)")
    train.add_argument("--no-wandb", action="store_true")
    train.set_defaults(handler=_train)

    data = commands.add_parser("data", help="download/generate and cache a task's data; write a summary JSON")
    data.add_argument("--task", required=True)
    data.add_argument("--profile", default="cpu")
    data.add_argument("--data-dir", default="data")
    data.add_argument("--out", required=True)
    data.set_defaults(handler=_data)

    compile_ = commands.add_parser("compile", help="compile a Sinkhorn teacher into ASAP")
    _add_compile_options(compile_)
    compile_.add_argument("--one-sided", action="store_true")
    compile_.add_argument("--out", required=True)
    compile_.add_argument("--report", help="CSV of the calibration report (R^2 and plan error per layer/head)")
    compile_.set_defaults(handler=_compile)

    bench = commands.add_parser("bench", help="benchmarks")
    bench.add_argument("kind", choices=["frozen", "downstream", "speed"])
    _add_compile_options(bench)
    bench.add_argument("--out", required=True, help="CSV path (a .provenance.json is written beside it)")
    bench.add_argument("--seq-lens", type=int, nargs="+", default=[256, 1024, 4096])
    bench.add_argument("--max-test-batches", type=int, default=None)
    bench.add_argument("--min-run-time", type=float, default=0.5, help="seconds of repeated timing per case")
    bench.add_argument("--calib-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    bench.add_argument("--length-edges", type=int, nargs="+", default=[128, 256, 384, 513])
    bench.add_argument("--slice-sweep", type=int, nargs="+", default=[4, 16, 64])
    bench.add_argument("--training", action="store_true", help="speed: time forward + backward")
    bench.add_argument("--raw", help="speed: JSON of every timed repeat per case")
    bench.add_argument("--batch", type=int, default=2, help="speed: batch size")
    bench.add_argument("--heads", type=int, default=4, help="speed: heads")
    bench.add_argument("--head-dim", type=int, default=64, help="speed: head dimension")
    bench.add_argument("--n-iters", type=int, default=3, help="speed: the teacher's Sinkhorn iterations")
    bench.add_argument("--sliced-max-len", type=int, default=1024, help="speed: longest n for sliced transport")
    bench.add_argument("--dense-max-len", type=int, default=4096, help="speed: longest n for n x n methods")
    bench.set_defaults(handler=_bench)

    report = commands.add_parser("report", help="tables and figures from a results folder")
    report.add_argument("--results", required=True, help="e.g. results/default")
    report.add_argument("--out", required=True, help="e.g. paper_figures/default")
    report.set_defaults(handler=_report)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
