"""Command line: ``python -m asap train --task mnist --variant sinkhorn --seed 0 [--set trainer.max_epochs=1]``."""

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
    record = train(config, Path(args.runs_dir) / args.profile / run, result, args.data_dir)
    print(json.dumps({"result": str(result), **record["metrics"], **record["cost"]}, indent=2))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = argparse.ArgumentParser(prog="asap", description=__doc__)
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
    train.add_argument("--no-wandb", action="store_true")
    train.set_defaults(handler=_train)

    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
