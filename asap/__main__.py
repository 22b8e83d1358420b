"""asap's command line.

python -m asap train --task mnist --variant sinkhorn --seed 0 [--set trainer.max_epochs=1]
python -m asap compile --checkpoint runs/default/mnist/sinkhorn/seed0/checkpoints/best.ckpt --slices auto \
    --directions auto --out mnist_asap.pt --operating-point mnist_asap.json
python -m asap bench frontier --checkpoint ... --operating-point mnist_asap.json --out frontier.csv
python -m asap bench downstream --checkpoint ... --out downstream.csv
python -m asap bench speed --seq-lens 256 1024 --operating-points mnist_asap.json --out speed.csv
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


def _finetune(args: argparse.Namespace) -> None:
    from asap.train.finetune import finetune

    record = finetune(
        args.compiled,
        args.run_dir,
        args.result,
        args.out,
        args.data_dir,
        steps=args.steps,
        params=args.params,
        lr_scale=args.lr_scale,
        seed=args.seed,
        wandb=not args.no_wandb,
    )
    print(json.dumps({"result": args.result, **record["metrics"], **record["cost"]}, indent=2))


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
    return {"map": args.map, "num_batches": args.calib_batches, "seed": args.calib_seed}


def _side(value: str) -> bool | str:
    sides = {"two": True, "one": False, "auto": "auto"}
    if value not in sides:
        raise argparse.ArgumentTypeError(f"side must be one of {sorted(sides)}, got {value!r}")
    return sides[value]


def _slices(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"slices must be a positive integer or 'auto', got {value!r}") from None


def _compile(args: argparse.Namespace) -> None:
    if not args.checkpoint:
        raise SystemExit("compile needs --checkpoint")
    import asap.compiler as compiler
    from asap.bench.frontier import teacher_iterations
    from asap.nn import attention_layers
    from asap.provenance import provenance, write_json_atomic
    from asap.train import load_teacher

    teacher = load_teacher(args.checkpoint, args.data_dir)
    layer = next(iter(attention_layers(teacher.model).values()))
    if args.online:
        return _compile_online(args, teacher)
    options = _compile_options(args)
    slices = None if args.slices == "auto" else [args.slices or layer.head_dim]
    directions = compiler.DIRECTIONS if args.directions == "auto" else (args.directions,)
    student, point, candidates = compiler.select_operating_point(
        teacher.model, teacher.datamodule.train_dataloader(), slices, directions, args.side, args.fit, **options
    )
    model_args = {
        **teacher.model_args,
        "attention": "asap",
        "attention_options": {"num_slices": point.slices, "two_sided": point.two_sided, "dual_map": args.map},
    }
    selection = {"slices": args.slices, "directions": args.directions, "side": args.side, "fit": args.fit, **options}
    metadata = {"teacher_checkpoint": str(args.checkpoint), "run": teacher.run, "compile": selection}
    compiler.save_compiled(student, args.out, model_args, metadata)
    report = compiler.calibration_report(student)
    run = {"task": teacher.run["task"], "variant": teacher.run["variant"], "seed": teacher.run["seed"]}
    if args.report:
        report.assign(**run, directions=point.directions, fit=point.fit).to_csv(args.report, index=False)
    if args.operating_point:
        write_json_atomic(
            args.operating_point,
            {
                **run,
                "operating_point": point.to_dict(),
                "rule": compiler.OPERATING_POINT_RULE,
                "heads": layer.num_heads,
                "head_dim": layer.head_dim,
                "teacher_iterations": teacher_iterations(teacher.model),
                "candidates": candidates.to_dict("records"),
                "compile": selection,
                "provenance": provenance(),
            },
        )
    print(candidates.to_string(index=False))
    print(report.to_string(index=False))
    print(f"operating point {point}; compiled model written to {args.out}")


def _compile_online(args: argparse.Namespace, teacher) -> None:
    """The ASAP model of a teacher trained with online maps, from its maps alone (no calibration data)."""
    import asap.compiler as compiler
    from asap.nn import ASAP

    student = compiler.compile_online(teacher.model)
    slices = {m.directions.shape[-1] for m in student.modules() if isinstance(m, ASAP)}
    model_args = {**teacher.model_args, "attention": "asap", "attention_options": {"num_slices": slices.pop()}}
    metadata = {"teacher_checkpoint": str(args.checkpoint), "run": teacher.run, "compile": {"online": True}}
    compiler.save_compiled(student, args.out, model_args, metadata)
    report = compiler.online_report(teacher.model)
    if args.report:
        run = {"task": teacher.run["task"], "variant": teacher.run["variant"], "seed": teacher.run["seed"]}
        report.assign(**run, fit="online").to_csv(args.report, index=False)
    print(report.to_string(index=False))
    print(f"compiled from the online maps; written to {args.out}")


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
    import pandas as pd

    from asap.bench.speed import MODEL_SHAPE_METHODS, speed_sweep, streaming_methods
    from asap.provenance import provenance, write_json_atomic

    options = dict(
        seq_lens=args.seq_lens,
        batch=args.batch,
        heads=args.heads,
        head_dim=args.head_dim,
        n_iters=args.n_iters,
        slices=args.slices if isinstance(args.slices, int) else 16,
        sliced_max_len=args.sliced_max_len,
        dense_max_len=args.dense_max_len,
        min_run_time=args.min_run_time,
        device="cuda" if torch_cuda() else "cpu",
    )
    tables = [
        speed_sweep(
            training=args.training,
            threads=threads,
            measure_memory=index == 0,
            compiled_seq_lens=[] if args.training else args.compiled_seq_lens,
            **options,
        )
        for index, threads in enumerate(args.threads)
    ]
    shapes = []
    if args.long_seq_lens:  # lengths where only the streaming methods fit, at a small batch
        label = f"long (B={args.long_batch}, H={args.long_heads})"
        shapes.append({"label": label, "batch": args.long_batch, "heads": args.long_heads})
        long_options = {**options, "seq_lens": args.long_seq_lens, "batch": args.long_batch, "heads": args.long_heads}
        methods = streaming_methods(args.training)
        tables.append(
            speed_sweep(
                training=args.training, threads=args.threads[-1], methods=methods, shape_label=label, **long_options
            )
        )
    if not args.training:  # ASAP runs at inference only: the compiled models' shapes are inference cases
        for path in args.operating_points:
            record = json.loads(Path(path).read_text())
            shape = dict(
                heads=record["heads"],
                head_dim=record["head_dim"],
                n_iters=record["teacher_iterations"],
                slices=record["operating_point"]["slices"],
            )
            shapes.append({"label": f"{record['task']}/{record['variant']}", **shape})
            model_options = {**options, **shape, "seq_lens": args.model_seq_lens, "threads": args.threads[0]}
            tables.append(
                speed_sweep(
                    methods=MODEL_SHAPE_METHODS,
                    measure_memory=False,
                    shape_label=shapes[-1]["label"],
                    **model_options,
                )
            )
    table = pd.concat(tables, ignore_index=True)
    info = {"options": options, "training": args.training, "model_shapes": shapes}
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
    import pandas as pd

    from asap.bench import accuracy_cost_frontier, calibration_curve, length_generalisation
    from asap.compiler import OperatingPoint
    from asap.data.base import constant_predictor_accuracy
    from asap.train import load_teacher

    loaded = load_teacher(args.checkpoint, args.data_dir)
    teacher, datamodule, run = loaded.model, loaded.datamodule, loaded.run
    options = _compile_options(args)
    test_loader = datamodule.test_dataloader()
    if args.operating_point:
        point = OperatingPoint(**json.loads(Path(args.operating_point).read_text())["operating_point"])
    elif args.kind == "frontier":
        raise SystemExit("bench frontier needs --operating-point (the JSON written by asap compile)")
    else:
        point = OperatingPoint(args.slices if isinstance(args.slices, int) else 16, args.directions)
    if args.kind == "frontier":
        from asap.bench.frontier import frontier_slices
        from asap.compiler.operating_points import teacher_head_dim

        factors = args.slice_factors
        slices = frontier_slices(teacher_head_dim(teacher), factors, point) if factors else None
        online = online_student(args.online_checkpoint, teacher, args.data_dir) if args.online_checkpoint else None
        table = accuracy_cost_frontier(
            teacher,
            datamodule.train_dataloader(),
            test_loader,
            point,
            seq_len=_sequence_length(teacher, datamodule),
            seq_lens=args.seq_lens,
            min_run_time=args.min_run_time,
            threads=args.threads[0],
            max_test_batches=args.max_test_batches,
            slices=slices,
            one_sided=args.one_sided_variants,
            online=online,
            **options,
        )
        splits = datamodule.datasets
        table["constant_predictor_acc"] = constant_predictor_accuracy(splits["train"], splits["test"])
    else:
        options.pop("num_batches")
        options.update(slices=point.slices, directions=point.directions, two_sided=point.two_sided, fit=args.fit)
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
        if datamodule.modality == "text":
            low, high = min(args.length_edges), max(args.length_edges)
            buckets = list(zip(args.length_edges[:-1], args.length_edges[1:], strict=True))
            calib_max_len = low + (high - low) // 2
            tables.append(
                length_generalisation(
                    teacher, datamodule.train_dataloader(), test_loader, calib_max_len, buckets, **options
                ).assign(experiment="length")
            )
        table = pd.concat(tables, ignore_index=True)
    table.insert(0, "task", run["task"])
    table.insert(1, "teacher", run["variant"])
    table.insert(2, "seed", run["seed"])
    info = {"checkpoint": str(args.checkpoint), "operating_point": point.to_dict(), "options": options, "run": run}
    _write_table(table, Path(args.out), info)


def online_student(checkpoint: str, teacher, data_dir: str):
    """The model compiled from the online maps of ``checkpoint``, a run of the same teacher with online maps.
    Its teacher weights must equal ``teacher``'s (online maps never touch training), else the comparison with
    post-hoc calibration would compare two teachers."""
    from asap.compiler import compile_online
    from asap.train import load_teacher

    online = load_teacher(checkpoint, data_dir).model
    state, reference = online.state_dict(), teacher.state_dict()
    differing = [key for key, value in reference.items() if not value.equal(state[key])]
    if differing:
        raise SystemExit(f"error: {checkpoint} was trained to other weights than the teacher: {differing[:3]}")
    return compile_online(online)


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
    parser.add_argument(
        "--slices", type=_slices, default=None, help="slices per head (default: head dim), or 'auto' (d/4 ... 4d)"
    )
    parser.add_argument("--map", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--directions", default="random", choices=["random", "pca", "auto"])
    parser.add_argument(
        "--fit", default="kl", choices=["kl", "ridge"], help="the map's objective: the plans' KL (from ridge) or ridge"
    )
    parser.add_argument(
        "--side",
        type=_side,
        default=True,
        help="rows exact ('two', default), columns exact ('one') or per head on held-out batches ('auto')",
    )
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
    compile_.add_argument(
        "--online", action="store_true", help="a run with online maps: compile from its maps, no calibration"
    )
    compile_.add_argument("--out", required=True)
    compile_.add_argument("--report", help="CSV of the calibration report (R^2 and plan error per layer/head)")
    compile_.add_argument("--operating-point", help="JSON of the chosen operating point and every candidate")
    compile_.set_defaults(handler=_compile)

    finetune = commands.add_parser("finetune", help="fine-tune a compiled ASAP model for a few hundred steps")
    finetune.add_argument("--compiled", required=True, help="a compiled model (asap compile --out)")
    finetune.add_argument("--out", required=True, help="the fine-tuned model (compiled format)")
    finetune.add_argument("--result", required=True, help="the run record (JSON)")
    finetune.add_argument("--run-dir", required=True, help="logs of this run")
    finetune.add_argument("--data-dir", default="data")
    finetune.add_argument("--steps", type=int, default=300)
    finetune.add_argument("--params", default="all", choices=["all", "maps"], help="every weight, or the maps only")
    finetune.add_argument("--lr-scale", type=float, default=0.1, help="times the teacher's learning rate")
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--no-wandb", action="store_true")
    finetune.set_defaults(handler=_finetune)

    bench = commands.add_parser("bench", help="benchmarks")
    bench.add_argument("kind", choices=["frontier", "downstream", "speed"])
    _add_compile_options(bench)
    bench.add_argument("--out", required=True, help="CSV path (a .provenance.json is written beside it)")
    bench.add_argument("--seq-lens", type=int, nargs="+", default=[1024], help="frontier: per-layer latency at these n")
    bench.add_argument("--operating-point", help="frontier/downstream: the JSON written by asap compile")
    bench.add_argument(
        "--online-checkpoint", help="frontier: the teacher's run with online maps (compiled from them: asap_online)"
    )
    bench.add_argument(
        "--slice-factors",
        type=float,
        nargs="+",
        help="frontier: ASAP at L = factor x head dim (and the operating point's L); default d/4, d/2, d, 2d, 4d",
    )
    bench.add_argument(
        "--one-sided-variants",
        default="all",
        choices=["all", "operating_point"],
        help="frontier: one-sided ASAP for every direction kind, or for the operating point's only",
    )
    bench.add_argument(
        "--threads", type=int, nargs="+", default=[1], help="threads of every timing (recorded); speed: one sweep each"
    )
    bench.add_argument("--max-test-batches", type=int, default=None)
    bench.add_argument("--min-run-time", type=float, default=0.5, help="seconds of repeated timing per case")
    bench.add_argument("--calib-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    bench.add_argument("--length-edges", type=int, nargs="+", default=[128, 256, 384, 513])
    bench.add_argument("--training", action="store_true", help="speed: time forward + backward")
    bench.add_argument("--raw", help="speed: JSON of every timed repeat per case")
    bench.add_argument("--operating-points", nargs="*", default=[], help="speed: compiled models' JSON (their shapes)")
    bench.add_argument("--model-seq-lens", type=int, nargs="+", default=[1024], help="speed: n at the models' shapes")
    bench.add_argument("--batch", type=int, default=2, help="speed: batch size")
    bench.add_argument(
        "--compiled-seq-lens", type=int, nargs="*", default=[], help="speed: lengths with torch.compile rows too"
    )
    bench.add_argument(
        "--long-seq-lens", type=int, nargs="*", default=[], help="speed: lengths for the streaming methods only"
    )
    bench.add_argument("--long-batch", type=int, default=1, help="speed: batch size at the long lengths")
    bench.add_argument("--long-heads", type=int, default=1, help="speed: heads at the long lengths")
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
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as error:  # a mistake in the input: one line (ASAP_TRACEBACK=1: all)
        if os.environ.get("ASAP_TRACEBACK"):
            raise
        parser.exit(2, f"asap {args.command}: error: {error}\n")


if __name__ == "__main__":
    main()
