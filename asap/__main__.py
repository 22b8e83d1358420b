"""asap's command line: a thin layer over the library's job functions, whose signatures hold the defaults.

  python -m asap train --task mnist --variant sinkhorn --seed 0 --set trainer.max_epochs=1
  python -m asap compile --checkpoint runs/cpu/mnist/sinkhorn/seed0/checkpoints/best.ckpt --slices auto \\
      --directions auto --out mnist_asap.pt --operating-point mnist_asap.json --report mnist_calibration.csv
  python -m asap bench frontier --checkpoint runs/cpu/mnist/sinkhorn/seed0/checkpoints/best.ckpt \\
      --operating-point mnist_asap.json --out frontier.csv
  python -m asap finetune --compiled mnist_asap.pt --out mnist_asap_ft.pt --result ft.json --run-dir runs/ft
  python -m asap report --results results/default --out paper_figures/default
  python -m asap dashboard --entity <you>            # after `wandb sync` of the offline runs

Every job but train (Lightning logs it as it runs) also writes a W&B run when it has finished: offline unless
WANDB_MODE says otherwise, under WANDB_DIR (default: the working directory); --no-wandb: none.
Mistakes in the input end in one line (`asap <command>: error: ...`, exit 2); ASAP_TRACEBACK=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Callable
from typing import Any

SUPPRESS = argparse.SUPPRESS


def default(function: Callable, name: str) -> str:
    """`` (default: X)`` from ``function``'s signature: the CLI states the library's defaults, never repeats them."""
    value = inspect.signature(function).parameters[name].default
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value) or "none"
    return f" (default: {value})"


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


def _kwargs(args: argparse.Namespace, *exclude: str) -> dict[str, Any]:
    """The options given on the command line (the others are left to the function's defaults)."""
    skip = {"command", "handler", "kind", "no_wandb", *exclude}
    return {key: value for key, value in vars(args).items() if key not in skip}


def _job(args: argparse.Namespace, job_type: str, **identity: Any):
    """The finished job's W&B run (asap.tracking.job_run), with the command line as its config."""
    from asap.tracking import job_run

    config = json.loads(json.dumps(_kwargs(args), default=str))  # paths and tuples as W&B-friendly values
    return job_run(job_type, config=config, enabled=not args.no_wandb, **identity)


def _run_identity(run: dict[str, Any], profile: str | None) -> dict[str, Any]:
    """W&B identity of a job on one training run: the profile recorded in the run (or given), task, variant, seed."""
    return {
        "profile": run.get("profile", profile),
        "task": run["task"],
        "variant": run["variant"],
        "seed": run["seed"],
    }


# --- the commands: each calls one library function and logs what it returned ---


def _train(args: argparse.Namespace) -> None:
    from asap.train import train_task

    record, result = train_task(**_kwargs(args), wandb=not args.no_wandb)
    print(json.dumps({"result": str(result), **record["metrics"], **record["cost"]}, indent=2))


def _data(args: argparse.Namespace) -> None:
    from asap.data.prepare import prepare_task_data
    from asap.tracking import log_data

    summary = prepare_task_data(**_kwargs(args))
    with _job(args, "data", profile=summary["profile"], task=summary["task"]) as run:
        log_data(run, summary["sizes"])
    print(f"{summary['task']}: {summary['sizes']}")


def _compile(args: argparse.Namespace) -> None:
    from asap.compiler.run import compile_checkpoint, compile_online_checkpoint
    from asap.tracking import log_compile

    options = _kwargs(args, "online", "profile")
    if args.online:
        unused = sorted(set(options) - {"checkpoint", "out", "report", "data_dir"})
        if unused:
            raise ValueError(f"--online compiles from the run's own maps; these options do not apply: {unused}")
        compiled = compile_online_checkpoint(**options)
    else:
        compiled = compile_checkpoint(**options)
    with _job(args, "compile", **_run_identity(compiled.run, args.profile)) as run:
        point = compiled.point.to_dict() if compiled.point else None
        log_compile(run, compiled.report, operating_point=point, candidates=compiled.candidates)
        run.artifact(None, "compiled-model", args.out)
    if compiled.candidates is not None:
        print(compiled.candidates.to_string(index=False))
    print(compiled.report.to_string(index=False))
    print(f"operating point {compiled.point}; compiled model written to {args.out}")


def _weights(args: argparse.Namespace) -> None:
    from asap.train.checkpoint import export_weights

    record = export_weights(args.checkpoint, args.out)
    print(f"{args.out}: {record['bytes']} bytes, sha256 {record['sha256']}")


def _finetune(args: argparse.Namespace) -> None:
    from asap.train.finetune import finetune

    record = finetune(**_kwargs(args), wandb=not args.no_wandb)
    print(json.dumps({"result": args.result_path, **record["metrics"], **record["cost"]}, indent=2))


def _teacher_benchmark(args: argparse.Namespace, job_type: str) -> None:
    """``bench frontier`` / ``bench downstream``: a table over one teacher, logged under that training run."""
    from asap.bench.run import downstream_benchmark, frontier_benchmark
    from asap.tracking import log_downstream, log_frontier

    benchmark, log = {
        "frontier": (frontier_benchmark, log_frontier),
        "downstream": (downstream_benchmark, log_downstream),
    }[job_type]
    table = benchmark(**_kwargs(args, "profile"))
    run = {"task": table["task"].iloc[0], "variant": table["teacher"].iloc[0], "seed": int(table["seed"].iloc[0])}
    with _job(args, job_type, **_run_identity(run, args.profile)) as wandb_run:
        log(wandb_run, table)
    print(table.to_string(index=False))


def _frontier(args: argparse.Namespace) -> None:
    _teacher_benchmark(args, "frontier")


def _downstream(args: argparse.Namespace) -> None:
    _teacher_benchmark(args, "downstream")


def _speed(args: argparse.Namespace) -> None:
    from asap.bench.run import speed_benchmark
    from asap.tracking import log_speed

    table = speed_benchmark(**_kwargs(args, "profile"))
    mode = "training" if getattr(args, "training", False) else "inference"
    with _job(args, "speed", profile=args.profile, extra={"mode": mode}) as run:
        log_speed(run, table, mode)
    print(table.to_string(index=False))


def _report(args: argparse.Namespace) -> None:
    from asap.report import build_report
    from asap.tracking import log_report

    written = build_report(args.results, args.out)
    with _job(args, "report", profile=args.profile) as run:
        log_report(run, args.results, written)
    for path in written:
        print(path)


def _screen(args: argparse.Namespace) -> None:
    from asap.bench.screen import screen_candidate, screen_table

    if args.table:
        print(screen_table(args.candidates, args.table).to_string(index=False))
        return
    (config,) = args.candidates
    row = screen_candidate(config, args.out, args.runs_dir, args.data_dir)
    print(json.dumps(row, indent=1))


def _dashboard(args: argparse.Namespace) -> None:
    from asap.dashboard import PANEL_KEYS, build_workspace, missing_keys, save_workspace
    from asap.tracking import read_offline_runs

    if args.check:  # offline: do the logged runs hold every key the panels read? (a resumed job's segments: one)
        runs = read_offline_runs(args.check)
        if not runs:
            raise FileNotFoundError(f"no offline W&B runs under {args.check}")
        lacking = {job: keys for job, keys in missing_keys(runs, PANEL_KEYS).items() if keys}
        print(f"{len(runs)} runs read; " + ("every panel key is logged" if not lacking else f"missing: {lacking}"))
        if lacking:
            raise SystemExit(1)
        return
    if not args.entity:
        raise ValueError("dashboard needs --entity (your W&B user or team), or --check DIR to check offline runs")
    workspace = build_workspace(args.entity, args.project)
    print(f"dashboard saved: {save_workspace(workspace)}")


# --- the parser: choices from the registries, defaults from the functions ---


def _registries_epilog() -> str:
    """What a newcomer can type, read from the registries (so it cannot go stale)."""
    from asap.data import TASKS
    from asap.nn import NORMALISERS
    from asap.train.config import profile_tasks, profiles

    lines = [f"tasks: {', '.join(sorted(TASKS))}", f"normalisers: {', '.join(NORMALISERS)}", "configured variants:"]
    for profile in profiles():
        tasks = profile_tasks(profile)
        variants = sorted({variant for names in tasks.values() for variant in names})
        lines.append(f"  --profile {profile}: tasks {', '.join(tasks)}; variants {', '.join(variants)}")
    return "\n".join(lines)


def _add_wandb(parser: argparse.ArgumentParser, with_profile: bool = True) -> None:
    parser.add_argument("--no-wandb", action="store_true", default=False, help="write no W&B run")
    if with_profile:
        parser.add_argument(
            "--profile", default=None, help="W&B group of this job's run (default: the profile of the training run)"
        )


def _add_calibration(parser: argparse.ArgumentParser, function: Callable, batches: bool = True) -> None:
    from asap.nn import DUAL_MAPS

    parser.add_argument("--data-dir", default=SUPPRESS, help="data cache" + default(function, "data_dir"))
    parser.add_argument(
        "--map", choices=sorted(DUAL_MAPS), default=SUPPRESS, help="dual map" + default(function, "map")
    )
    if batches:
        parser.add_argument(
            "--calib-batches",
            dest="num_batches",
            type=int,
            default=SUPPRESS,
            help="calibration batches" + default(function, "num_batches"),
        )
    parser.add_argument(
        "--calib-seed", dest="seed", type=int, default=SUPPRESS, help="seed" + default(function, "seed")
    )


def build_parser() -> argparse.ArgumentParser:
    from asap.bench.run import SWEEP_OPTIONS, downstream_benchmark, frontier_benchmark, speed_benchmark
    from asap.bench.speed import speed_sweep
    from asap.compiler import DIRECTIONS
    from asap.compiler.fit import FITS
    from asap.compiler.run import compile_checkpoint
    from asap.data import TASKS
    from asap.data.prepare import prepare_task_data
    from asap.ops import DUAL_FEATURES
    from asap.train.config import DEFAULT_PROFILE
    from asap.train.finetune import finetune
    from asap.train.run import train_task

    raw = argparse.RawDescriptionHelpFormatter
    epilog = _registries_epilog()  # reads every profile's configs: once, for the two pages that show it
    parser = argparse.ArgumentParser(prog="asap", description=__doc__, epilog=epilog, formatter_class=raw)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    train = commands.add_parser("train", help="train one (task, variant, seed)", epilog=epilog, formatter_class=raw)
    train.add_argument("--task", required=True, choices=sorted(TASKS), metavar="TASK", help="a task (listed below)")
    train.add_argument("--variant", required=True, help="a variant of the task's config (listed below)")
    train.add_argument("--seed", type=int, default=SUPPRESS, help="seed" + default(train_task, "seed"))
    train.add_argument("--profile", default=SUPPRESS, help=f"config set (listed below; default: {DEFAULT_PROFILE})")
    train.add_argument(
        "--config", default=SUPPRESS, help="a task config file instead of <config dir>/<profile>/<task>.yaml"
    )
    train.add_argument(
        "--config-dir", default=SUPPRESS, help="profile folders of task configs (default: the shipped ones)"
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=SUPPRESS,
        metavar="KEY=VALUE",
        help="override, e.g. optim.lr=1e-3 (repeatable)",
    )
    train.add_argument("--data-dir", default=SUPPRESS, help="data cache" + default(train_task, "data_dir"))
    train.add_argument("--runs-dir", default=SUPPRESS, help="checkpoints and logs" + default(train_task, "runs_dir"))
    train.add_argument("--results-dir", default=SUPPRESS, help="run records" + default(train_task, "results_dir"))
    train.add_argument("--result", default=SUPPRESS, help="the run record (default <results-dir>/<profile>/train/...)")
    train.add_argument("--run-dir", default=SUPPRESS, help="this run's checkpoints and logs (default <runs-dir>/...)")
    train.add_argument(
        "--checkpoint-every-s",
        type=float,
        default=SUPPRESS,
        help="seconds of training between the checkpoints a killed run resumes from"
        + default(train_task, "checkpoint_every_s"),
    )
    _add_wandb(train, with_profile=False)
    train.set_defaults(handler=_train)

    data = commands.add_parser("data", help="download or generate a task's data once; write a summary JSON")
    data.add_argument("--task", required=True, choices=sorted(TASKS), metavar="TASK", help=", ".join(sorted(TASKS)))
    data.add_argument("--out", required=True, help="the summary (JSON)")
    data.add_argument("--profile", default=DEFAULT_PROFILE, help=f"config set (default: {DEFAULT_PROFILE})")
    data.add_argument("--config-dir", default=SUPPRESS, help="profile folders of task configs")
    data.add_argument("--data-dir", default=SUPPRESS, help="data cache" + default(prepare_task_data, "data_dir"))
    _add_wandb(data, with_profile=False)
    data.set_defaults(handler=_data)

    compile_ = commands.add_parser("compile", help="compile a Sinkhorn teacher into ASAP")
    compile_.add_argument("--checkpoint", required=True, help="a Sinkhorn run's checkpoint (best.ckpt)")
    compile_.add_argument("--out", required=True, help="the compiled model")
    compile_.add_argument("--report", default=SUPPRESS, help="the calibration report (CSV: R², plan error per head)")
    compile_.add_argument("--operating-point", default=SUPPRESS, help="the chosen point and every candidate (JSON)")
    compile_.add_argument(
        "--slices",
        type=_slices,
        default=SUPPRESS,
        help="slices per head (default: the head dim), or 'auto' (d/4 ... 4d)",
    )
    compile_.add_argument(
        "--directions",
        choices=[*DIRECTIONS, "auto"],
        default=SUPPRESS,
        help="slice directions" + default(compile_checkpoint, "directions"),
    )
    compile_.add_argument(
        "--fit",
        choices=sorted(FITS),
        default=SUPPRESS,
        help="the map's objective: the plans' KL (from ridge) or ridge" + default(compile_checkpoint, "fit"),
    )
    compile_.add_argument(
        "--features",
        choices=DUAL_FEATURES,
        default=SUPPRESS,
        help="the map's inputs: the paper's sliced potentials, or with the rows' log-sum-exps (one more fused pass)"
        + default(compile_checkpoint, "features"),
    )
    compile_.add_argument(
        "--side",
        dest="two_sided",
        type=_side,
        default=SUPPRESS,
        help="rows exact ('two', default), columns exact ('one') or per head on held-out batches ('auto')",
    )
    compile_.add_argument(
        "--online", action="store_true", default=False, help="a run with online maps: from its maps, no calibration"
    )
    _add_calibration(compile_, compile_checkpoint)
    _add_wandb(compile_)
    compile_.set_defaults(handler=_compile)

    tune = commands.add_parser("finetune", help="fine-tune a compiled ASAP model for a few hundred steps")
    tune.add_argument("--compiled", required=True, help="a compiled model (asap compile --out)")
    tune.add_argument("--out", required=True, help="the fine-tuned model (compiled format)")
    tune.add_argument("--result", dest="result_path", required=True, help="the run record (JSON)")
    tune.add_argument("--run-dir", required=True, help="logs of this run")
    tune.add_argument("--data-dir", default=SUPPRESS, help="data cache" + default(finetune, "data_dir"))
    tune.add_argument("--steps", type=int, default=SUPPRESS, help="steps" + default(finetune, "steps"))
    tune.add_argument(
        "--params",
        choices=["all", "maps"],
        default=SUPPRESS,
        help="every weight, or the maps only" + default(finetune, "params"),
    )
    tune.add_argument(
        "--lr-scale", type=float, default=SUPPRESS, help="x the teacher's learning rate" + default(finetune, "lr_scale")
    )
    tune.add_argument("--seed", type=int, default=SUPPRESS, help="seed" + default(finetune, "seed"))
    _add_wandb(tune, with_profile=False)
    tune.set_defaults(handler=_finetune)

    bench = commands.add_parser("bench", help="benchmarks: frontier, downstream, speed")
    kinds = bench.add_subparsers(dest="kind", required=True, metavar="kind")

    frontier = kinds.add_parser("frontier", help="accuracy-cost frontier of a teacher around its operating point")
    frontier.add_argument("--checkpoint", required=True, help="a Sinkhorn run's checkpoint (best.ckpt)")
    frontier.add_argument("--operating-point", required=True, help="the JSON written by asap compile")
    frontier.add_argument("--out", required=True, help="CSV (a .provenance.json is written beside it)")
    frontier.add_argument(
        "--seq-lens",
        type=int,
        nargs="+",
        default=SUPPRESS,
        help="per-layer latency at these n too" + default(frontier_benchmark, "seq_lens"),
    )
    frontier.add_argument(
        "--slice-factors",
        type=float,
        nargs="+",
        default=SUPPRESS,
        help="ASAP at L = factor x head dim (and the operating point's L); default d/4, d/2, d, 2d, 4d",
    )
    frontier.add_argument(
        "--one-sided-variants",
        dest="one_sided",
        choices=["all", "operating_point"],
        default=SUPPRESS,
        help="one-sided ASAP for every direction kind, or at the operating point only"
        + default(frontier_benchmark, "one_sided"),
    )
    frontier.add_argument(
        "--online-checkpoint", default=SUPPRESS, help="the teacher's twin run with online maps (row asap_online)"
    )
    frontier.add_argument(
        "--threads", type=int, default=SUPPRESS, help="threads of every timing" + default(frontier_benchmark, "threads")
    )
    frontier.add_argument("--max-test-batches", type=int, default=SUPPRESS, help="default: the whole test split")
    frontier.add_argument(
        "--min-run-time",
        type=float,
        default=SUPPRESS,
        help="seconds of timing per case, over all rounds" + default(frontier_benchmark, "min_run_time"),
    )
    frontier.add_argument(
        "--rounds",
        type=int,
        default=SUPPRESS,
        help="interleaved timing rounds (one block per case each)" + default(frontier_benchmark, "rounds"),
    )
    frontier.add_argument(
        "--no-compiled",
        dest="compiled",
        action="store_false",
        default=SUPPRESS,
        help="time the eager teacher implementations and ASAP only (no torch.compile)",
    )
    _add_calibration(frontier, frontier_benchmark)
    _add_wandb(frontier)
    frontier.set_defaults(handler=_frontier)

    downstream = kinds.add_parser("downstream", help="accuracy against calibration data and test length")
    downstream.add_argument("--checkpoint", required=True, help="a Sinkhorn run's checkpoint (best.ckpt)")
    downstream.add_argument("--out", required=True, help="CSV (a .provenance.json is written beside it)")
    downstream.add_argument("--operating-point", default=SUPPRESS, help="the JSON of asap compile (default: L = 16)")
    downstream.add_argument(
        "--fit",
        choices=sorted(FITS),
        default=SUPPRESS,
        help="the maps' objective" + default(downstream_benchmark, "fit"),
    )
    downstream.add_argument(
        "--calib-sizes",
        type=int,
        nargs="+",
        default=SUPPRESS,
        help="calibration batches" + default(downstream_benchmark, "calib_sizes"),
    )
    downstream.add_argument(
        "--length-edges",
        type=int,
        nargs="+",
        default=SUPPRESS,
        help="text: test-length buckets" + default(downstream_benchmark, "length_edges"),
    )
    downstream.add_argument("--max-test-batches", type=int, default=SUPPRESS, help="default: the whole test split")
    _add_calibration(downstream, downstream_benchmark, batches=False)
    _add_wandb(downstream)
    downstream.set_defaults(handler=_downstream)

    speed = kinds.add_parser("speed", help="latency and peak memory of every method against n")
    speed.add_argument("--out", required=True, help="CSV (a .provenance.json is written beside it)")
    speed.add_argument("--raw", default=SUPPRESS, help="JSON of every timed repeat per case")
    speed.add_argument("--kernels", default=SUPPRESS, help="CSV of where each method's time goes (torch.profiler)")
    speed.add_argument("--training", action="store_true", default=SUPPRESS, help="time forward + backward")
    for name, kind, text in (
        ("seq_lens", int, "n"),
        ("threads", int, "one sweep per thread count"),
        ("thread_seq_lens", int, "n of the sweeps after the first thread count"),
        ("model_seq_lens", int, "n at the compiled models' shapes"),
        ("compiled_seq_lens", int, "n with torch.compile rows too"),
        ("long_seq_lens", int, "n for the streaming methods only"),
    ):
        flag = "--" + name.replace("_", "-")
        home = speed_sweep if name in SWEEP_OPTIONS else speed_benchmark
        speed.add_argument(flag, type=kind, nargs="*", default=SUPPRESS, help=text + default(home, name))
    speed.add_argument(
        "--operating-points", nargs="*", default=SUPPRESS, help="compiled models' JSON: time their shapes too"
    )
    for name, text in (
        ("batch", "batch size"),
        ("heads", "heads"),
        ("head_dim", "head dimension"),
        ("n_iters", "the teacher's Sinkhorn iterations"),
        ("slices", "ASAP's slices"),
        ("sliced_max_len", "longest n for sliced transport"),
        ("dense_max_len", "longest n for methods holding n x n"),
        ("long_batch", "batch at the long lengths"),
        ("long_heads", "heads at the long lengths"),
        ("rounds", "interleaved timing rounds (one block per method each)"),
    ):
        flag = "--" + name.replace("_", "-")
        home = speed_sweep if name in SWEEP_OPTIONS else speed_benchmark
        speed.add_argument(flag, type=int, default=SUPPRESS, help=text + default(home, name))
    speed.add_argument(
        "--min-run-time",
        type=float,
        default=SUPPRESS,
        help="seconds of timing per case, over all rounds" + default(speed_sweep, "min_run_time"),
    )
    _add_wandb(speed)
    speed.set_defaults(handler=_speed)

    report = commands.add_parser("report", help="tables and figures from a results folder")
    report.add_argument("--results", required=True, help="e.g. results/default")
    report.add_argument("--out", required=True, help="e.g. paper_figures/default")
    _add_wandb(report)
    report.set_defaults(handler=_report)

    weights = commands.add_parser(
        "weights", help="write the weights-only checkpoint of a training run (and its sha256 record beside it)"
    )
    weights.add_argument("--checkpoint", required=True, help="a training checkpoint, e.g. runs/…/best.ckpt")
    weights.add_argument("--out", required=True, help="e.g. weights/default/<task>/<variant>/seed0.ckpt")
    weights.set_defaults(handler=_weights, no_wandb=True)

    screen = commands.add_parser(
        "screen", help="screen a candidate task on validation (experiments/screen/<candidate>.yaml), or tabulate"
    )
    screen.add_argument("candidates", nargs="+", help="one candidate config, or with --table the rows' JSONs")
    screen.add_argument("--out", help="the candidate's row, e.g. results/default/screen/<candidate>.json")
    screen.add_argument("--table", help="write the screen table of the given rows (CSV and Markdown)")
    screen.add_argument("--runs-dir", default="runs/screen", help="checkpoints and logs (default: runs/screen)")
    screen.add_argument("--data-dir", default="data", help="data cache (default: data)")
    screen.set_defaults(handler=_screen)

    dashboard = commands.add_parser("dashboard", help="build the W&B workspace of the paper's panels")
    dashboard.add_argument("--entity", help="your W&B user or team")
    dashboard.add_argument("--project", default="asap", help="W&B project (default: asap)")
    dashboard.add_argument("--check", metavar="DIR", help="offline: check the runs under DIR log every panel's keys")
    dashboard.set_defaults(handler=_dashboard, no_wandb=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as error:  # a mistake in the input: one line (ASAP_TRACEBACK=1: all)
        if os.environ.get("ASAP_TRACEBACK"):
            raise
        prog = " ".join(filter(None, ["asap", args.command, getattr(args, "kind", None)]))
        parser.exit(2, f"{prog}: error: {error}\n")


if __name__ == "__main__":
    main()
