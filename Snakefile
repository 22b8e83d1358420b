# asap: from data to every table and figure.
#   make reproduce                                   # the default profile (offline, CPU)
#   snakemake --cores all --configfile experiments/paper.yaml   # paper scale (hub data, GPU, 3 seeds)
# Every rule calls the package's CLI; configuration lives in experiments/*.yaml.

import json
import os
from pathlib import Path
import sys


configfile: os.path.join(workflow.basedir, "experiments", "default.yaml")


# snakemake --report report.html: this page first, then every figure and table the report rule marks below.
report: "workflow/report/workflow.rst"


PROFILE = config["profile"]  # training configs under experiments/<profile>/
RESULTS = config["results"]
RUNS = config["runs"]
DATA = config["data_dir"]
FIGURES = config["figures"]
TASKS, SEEDS = config["tasks"], config["seeds"]
TEACHER_SEEDS = config.get("teacher_seeds", SEEDS[:1])
COMPILE = config["compile"]
FRONTIER = config["frontier"]
BENCH = config["bench"]
SPEED = config["speed"]

sys.path.insert(0, workflow.basedir)  # read the task configs with the package's own rules
from asap.results import weights_record_path  # noqa: E402
from asap.train.config import load_task_config, variant_entry  # noqa: E402


def variants_of(task):
    """The variants trained on ``task``: the profile's, plus the task's own (e.g. a T = 10 teacher)."""
    return [*config["variants"], *config.get("task_variants", {}).get(task, [])]


def is_teacher(task, variant):
    """A Sinkhorn run that is compiled and benchmarked (a run with online maps is its teacher's twin: the same
    weights, see asap.nn.online_map; it enters its teacher's frontier as asap_online)."""
    config = load_task_config(task, PROFILE, os.path.join(workflow.basedir, "experiments", PROFILE, task + ".yaml"))
    normaliser, options, _ = variant_entry(config, variant)
    return normaliser == "sinkhorn" and not options.get("online_map")


ONLINE = config.get("online_variants", {})  # teacher variant -> its run with online maps
FINETUNE = config.get("finetune", {"teachers": []})
TRAINED = [(task, variant) for task in TASKS for variant in variants_of(task)]
TEACHERS = [(task, variant) for task, variant in TRAINED if is_teacher(task, variant)]
FINETUNED = [(task, variant) for task, variant in TEACHERS if variant in FINETUNE["teachers"]]


def online_of(task, variant):
    """The run with online maps of this teacher, if the workflow trains one."""
    online = ONLINE.get(variant)
    return online if online in variants_of(task) else None
DOWNSTREAM = [(task, variant) for task, variant in TEACHERS if variant in config.get("downstream_teachers", [variant])]


def per_run(pattern, runs, seeds):
    return [pattern.format(task=task, variant=variant, seed=seed) for task, variant in runs for seed in seeds]


wildcard_constraints:
    task="[a-z0-9_]+",
    variant="[a-z0-9_]+",
    seed="[0-9]+",


# One job at a time by default: torch already uses every core, and two jobs sharing two cores thrash.
# (workflow.cores only when needed: under a cluster executor without --cores, reading it is an error.)
THREADS = config["threads_per_job"] if "threads_per_job" in config else workflow.cores
ASAP = f"{sys.executable} -m asap"  # the interpreter running the workflow, whatever PATH says
# Every job writes a W&B run (offline unless WANDB_MODE says otherwise), grouped by the profile: beside the runs.
os.environ.setdefault("WANDB_DIR", os.path.abspath(RUNS))
os.makedirs(os.environ["WANDB_DIR"], exist_ok=True)
GROUP = f"--profile {PROFILE}"  # the W&B group of jobs without a training run of their own (speed, report)
RUN_CHECKPOINT = RUNS + "/{task}/{variant}/seed{seed}/checkpoints/best.ckpt"
COMPILED_MODEL = RUNS + "/{task}/compiled/{variant}/seed{seed}.pt"
RAW_TIMINGS = RUNS + "/speed/{mode}.json"
TRAIN_RECORD = RESULTS + "/train/{task}/{variant}/seed{seed}.json"
# Committed weights (the 60-minute budget's option A). A profile with `weights: DIR` commits the weights-only
# checkpoints of its teachers and their online twins under DIR, each with its sha256 record (asap weights):
# `make reproduce` then compiles, benchmarks and reports from them and from the committed training records,
# training nothing; `make reproduce-all` (config retrain=True) trains every run first and writes DIR anew. A
# profile without `weights` trains every run.
WEIGHTS = config.get("weights")
RETRAIN = WEIGHTS is None or bool(config.get("retrain", False))
TEACHER_CHECKPOINT = WEIGHTS + "/{task}/{variant}/seed{seed}.ckpt" if WEIGHTS else RUN_CHECKPOINT
TEACHER_CHECKPOINT_RECORD = [str(weights_record_path(TEACHER_CHECKPOINT))] if WEIGHTS else []
CALIBRATION_REPORT = RESULTS + "/compile/{task}/{variant}/seed{seed}.csv"
OPERATING_POINT = RESULTS + "/compile/{task}/{variant}/seed{seed}.operating_point.json"
FRONTIER_TABLE = RESULTS + "/bench/frontier/{task}/{variant}/seed{seed}.csv"
FRONTIER_PREDICTIONS = RESULTS + "/bench/frontier/{task}/{variant}/seed{seed}.predictions.npz"  # asap.results
FRONTIER_TIMINGS = RESULTS + "/bench/frontier/{task}/{variant}/seed{seed}.timings.json"
DOWNSTREAM_TABLE = RESULTS + "/bench/downstream/{task}/{variant}/seed{seed}.csv"
FINETUNE_RECORD = RESULTS + "/finetune/{task}/{variant}/seed{seed}.json"
FINETUNED_MODEL = RUNS + "/{task}/finetuned/{variant}/seed{seed}.pt"
COMPILE_ARGS = (
    f"--slices {COMPILE['slices']} --map {COMPILE['map']} --directions {COMPILE['directions']} "
    f"--calib-batches {COMPILE['calib_batches']} --fit {COMPILE.get('fit', 'kl')} --side {COMPILE.get('side', 'two')}"
    f" --features {COMPILE.get('features', 'sliced')} {GROUP}"
)
CALIBRATION_ARGS = f"--map {COMPILE['map']} --calib-batches {COMPILE['calib_batches']} {GROUP}"
DOWNSTREAM_ARGS = f"--map {COMPILE['map']} {GROUP}"  # the curves vary the number of calibration batches themselves

def numbers(values):
    return " ".join(str(v) for v in values)


SPEED_ARGS = (
    f"--batch {SPEED['batch']} --heads {SPEED['heads']} --head-dim {SPEED['head_dim']} "
    f"--n-iters {SPEED['n_iters']} --slices {SPEED['slices']} --threads {numbers(SPEED['threads'])} "
    f"--sliced-max-len {SPEED['sliced_max_len']} --dense-max-len {SPEED['dense_max_len']}"
)


# The runs behind the results (checkpoints, compiled models, raw timings) are not committed. Requiring them
# makes a fresh clone, which has the committed results but not their runs, regenerate everything; once they
# exist, a rerun does nothing.
RUN_ARTEFACTS = [
    *(per_run(RUN_CHECKPOINT, TRAINED, SEEDS) if RETRAIN else []),
    *per_run(COMPILED_MODEL, TEACHERS, TEACHER_SEEDS),
    *per_run(FINETUNED_MODEL, FINETUNED, TEACHER_SEEDS),
    *expand(RAW_TIMINGS, mode=["inference", "training"]),
]


rule all:
    input:
        FIGURES + "/provenance.json",
        RUN_ARTEFACTS,


# The screen of candidate tasks (issue "teachers worth replacing"): validation only, run before the default tasks
# are chosen (`make screen`); a target of its own, not part of `all`. Rows, run records and table: RESULTS/screen.
SCREEN = RESULTS + "/screen"
SCREEN_CANDIDATES = sorted(p.stem for p in Path(workflow.basedir, "experiments", "screen").glob("*.yaml"))


rule screen:
    input:
        expand(SCREEN + "/{candidate}.json", candidate=SCREEN_CANDIDATES),
    output:
        SCREEN + "/screen.csv",
        SCREEN + "/screen.md",
    shell:
        ASAP + " screen {input} --table {output[0]}"


rule screen_candidate:
    input:
        os.path.join(workflow.basedir, "experiments", "screen", "{candidate}.yaml"),
    output:
        row=SCREEN + "/{candidate}.json",
        records=expand(SCREEN + "/{{candidate}}/{variant}.json", variant=["softmax", "sinkhorn"]),
    log:
        SCREEN + "/logs/{candidate}.log",
    threads: THREADS
    shell:
        ASAP + " screen {input} --out {output.row} --runs-dir " + RUNS + "/screen --data-dir " + DATA + " > {log} 2>&1"


rule data:
    output:
        DATA + "/prepared/" + PROFILE + "/{task}.json",
    log:
        RESULTS + "/logs/data/{task}.log",
    benchmark:
        RESULTS + "/jobs/data/{task}.tsv"
    shell:
        ASAP + " data --task {wildcards.task} --profile " + PROFILE + " --data-dir " + DATA
        + " --out {output} > {log} 2>&1"


if RETRAIN:  # with committed weights and no retrain, the training records are inputs, as the weights are

    rule train:
        input:
            DATA + "/prepared/" + PROFILE + "/{task}.json",
        output:
            record=TRAIN_RECORD,
            checkpoint=RUN_CHECKPOINT,
        log:
            RESULTS + "/logs/train/{task}/{variant}/seed{seed}.log",
        benchmark:
            RESULTS + "/jobs/train/{task}/{variant}/seed{seed}.tsv"
        threads: THREADS
        shell:
            ASAP + " train --task {wildcards.task} --variant {wildcards.variant} --seed {wildcards.seed}"
            " --profile " + PROFILE + " --data-dir " + DATA + " --run-dir " + RUNS + "/{wildcards.task}/"
            "{wildcards.variant}/seed{wildcards.seed} --result {output.record} > {log} 2>&1"



if WEIGHTS and RETRAIN:

    rule weights:
        input:
            RUN_CHECKPOINT,
        output:
            checkpoint=TEACHER_CHECKPOINT,
            record=TEACHER_CHECKPOINT_RECORD,
        log:
            RESULTS + "/logs/weights/{task}/{variant}/seed{seed}.log",
        shell:
            ASAP + " weights --checkpoint {input} --out {output.checkpoint} > {log} 2>&1"


rule compile:
    input:
        checkpoint=TEACHER_CHECKPOINT,
        record=TEACHER_CHECKPOINT_RECORD,
    output:
        model=COMPILED_MODEL,
        report=CALIBRATION_REPORT,
        operating_point=OPERATING_POINT,
    log:
        RESULTS + "/logs/compile/{task}/{variant}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/compile/{task}/{variant}/seed{seed}.tsv"
    threads: THREADS
    shell:
        ASAP + " compile --checkpoint {input.checkpoint} --data-dir " + DATA + " " + COMPILE_ARGS
        + " --out {output.model} --report {output.report} --operating-point {output.operating_point} > {log} 2>&1"


def online_checkpoint(wildcards):
    online = online_of(wildcards.task, wildcards.variant)
    return [TEACHER_CHECKPOINT.format(task=wildcards.task, variant=online, seed=wildcards.seed)] if online else []


rule frontier:
    input:
        checkpoint=TEACHER_CHECKPOINT,
        record=TEACHER_CHECKPOINT_RECORD,
        operating_point=OPERATING_POINT,
        online=online_checkpoint,
    output:
        table=FRONTIER_TABLE,
        predictions=FRONTIER_PREDICTIONS,
        timings=FRONTIER_TIMINGS,
    log:
        RESULTS + "/logs/bench/frontier/{task}/{variant}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/frontier/{task}/{variant}/seed{seed}.tsv"
    threads: THREADS
    params:
        seq_lens=numbers(FRONTIER["seq_lens"]),
        sweep=(f"--slice-factors {numbers(FRONTIER['slice_factors'])}" if "slice_factors" in FRONTIER else "")
        + f" --one-sided-variants {FRONTIER.get('one_sided', 'all')}",
        online=lambda wildcards, input: f"--online-checkpoint {input.online}" if input.online else "",
    shell:
        ASAP + " bench frontier --checkpoint {input.checkpoint} --operating-point {input.operating_point}"
        " --data-dir " + DATA + " " + CALIBRATION_ARGS + " --seq-lens {params.seq_lens} {params.sweep}"
        " --min-run-time " + str(FRONTIER["min_run_time"]) + " --threads " + str(FRONTIER["threads"])
        + " --rounds " + str(FRONTIER.get("rounds", 15)) + ("" if FRONTIER.get("compiled", True) else " --no-compiled")
        + " {params.online} --out {output.table} > {log} 2>&1"


rule downstream:
    input:
        checkpoint=TEACHER_CHECKPOINT,
        record=TEACHER_CHECKPOINT_RECORD,
        operating_point=OPERATING_POINT,
    output:
        DOWNSTREAM_TABLE,
    log:
        RESULTS + "/logs/bench/downstream/{task}/{variant}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/downstream/{task}/{variant}/seed{seed}.tsv"
    threads: THREADS
    params:
        sizes=numbers(BENCH["calib_sizes"]),
        edges=numbers(BENCH["length_edges"]),
    shell:
        ASAP + " bench downstream --checkpoint {input.checkpoint} --operating-point {input.operating_point}"
        " --data-dir " + DATA + " " + DOWNSTREAM_ARGS + " --fit " + BENCH.get("downstream_fit", "kl")
        + " --calib-sizes {params.sizes} --length-edges {params.edges}"
        + " --max-test-batches " + str(BENCH["downstream_test_batches"]) + " --out {output} > {log} 2>&1"


rule finetune:
    input:
        COMPILED_MODEL,
    output:
        record=FINETUNE_RECORD,
        model=FINETUNED_MODEL,
    log:
        RESULTS + "/logs/finetune/{task}/{variant}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/finetune/{task}/{variant}/seed{seed}.tsv"
    threads: THREADS
    params:
        options=lambda wildcards: f"--steps {FINETUNE['steps']} --params {FINETUNE['params']}"
        f" --lr-scale {FINETUNE['lr_scale']}",
    shell:
        ASAP + " finetune --compiled {input} --out {output.model} --result {output.record} --data-dir " + DATA
        + " --run-dir " + RUNS + "/{wildcards.task}/finetuned/{wildcards.variant}/seed{wildcards.seed}"
        + " {params.options} > {log} 2>&1"


rule speed:
    input:
        operating_points=lambda wildcards: per_run(OPERATING_POINT, TEACHERS, TEACHER_SEEDS[:1])
        if wildcards.mode == "inference" else [],
    output:
        table=RESULTS + "/bench/speed/{mode}.csv",
        kernels=RESULTS + "/bench/speed/{mode}_kernels.csv",
        raw=RAW_TIMINGS,
    log:
        RESULTS + "/logs/bench/speed/{mode}.log",
    benchmark:
        RESULTS + "/jobs/speed/{mode}.tsv"
    threads: THREADS
    params:
        seq_lens=lambda wildcards: numbers(SPEED[wildcards.mode + "_seq_lens"]),
        training=lambda wildcards: "--training" if wildcards.mode == "training" else "",
        model_seq_lens=numbers(SPEED["model_seq_lens"]),
        compiled=lambda wildcards: f"--compiled-seq-lens {numbers(SPEED['compiled_seq_lens'])}"
        if wildcards.mode == "inference" and SPEED.get("compiled_seq_lens") else "",
        thread_seq_lens=lambda wildcards: f"--thread-seq-lens {numbers(SPEED['thread_seq_lens'][wildcards.mode])}"
        if SPEED.get("thread_seq_lens") else "",
        long=f"--long-seq-lens {numbers(SPEED['long_seq_lens'])} --long-batch {SPEED['long_batch']}"
        f" --long-heads {SPEED['long_heads']}" if SPEED.get("long_seq_lens") else "",
    shell:
        ASAP + " bench speed {params.training} --seq-lens {params.seq_lens} " + SPEED_ARGS + " " + GROUP
        + " --operating-points {input.operating_points} --model-seq-lens {params.model_seq_lens} {params.long} {params.compiled}"
        + " {params.thread_seq_lens}"
        + " --min-run-time " + str(BENCH["min_run_time"]) + " --out {output.table} --kernels {output.kernels}"
        + " --raw {output.raw} > {log} 2>&1"


# The files asap.report.build_report writes, each figure as PNG and PDF and each table as HTML, Markdown and LaTeX.
# All are declared, so that a report that stops writing one fails instead of leaving a stale copy; the PNGs and
# HTML tables go into `snakemake --report` (which shows HTML inline, but Markdown and LaTeX only as downloads),
# each with its caption in workflow/report/ (what it plots, its axes or columns, how to read it) and in a folder
# per question: name -> (category, its line in the report's list).
REPORT_FIGURES = {
    "frontier": ("Frontier", "agreement against latency, per teacher"),
    "accuracy_sweeps": ("Accuracy", "accuracy against iterations and slices"),
    "dual_map_r2": ("Calibration", "dual R² and plan error per layer"),
    "calibration_curve": ("Calibration", "accuracy recovered against calibration data"),
    "speed": ("Speed and cost", "one layer's latency and memory"),
    "training_cost": ("Speed and cost", "training step time and memory"),
}
REPORT_TABLES = {
    "headline": ("Frontier", "per teacher: ASAP's match, speed-up, the claim"),
    "frozen_layer": ("Frontier", "every replacement of each frozen teacher"),
    "accuracy": ("Accuracy", "test accuracy by task and attention"),
    "compile_options": ("Accuracy", "accuracy recovery per compile option"),
    "compile_options_layers": ("Calibration", "plan error per layer of each compile option"),
    "calibration": ("Calibration", "calibration scores per layer"),
    "speed": ("Speed and cost", "one layer's latency ratios and memory"),
    "training_cost": ("Speed and cost", "training cost per variant"),
    "workflow_cost": ("Speed and cost", "this workflow's time and memory per rule"),
}


def report_item(name, suffix, kind, entries):
    category, line = entries[name]
    return report(
        f"{FIGURES}/{name}.{suffix}",
        caption=f"workflow/report/{kind}s/{name}.rst",
        category=category,
        subcategory=kind.capitalize() + "s",
        labels={kind: f"{name}: {line}"},  # one label only: the report turns a second into a toggle
    )


def provenance_labels(wildcards, output):
    """provenance.json's key fields, shown beside it in the report's list: the report offers JSON only as a
    download."""
    with open(output.provenance) as file:
        record = json.load(file)
    short = lambda commit: commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return {
        "report commit": short(record["report"]["git_commit"]),
        "training commits": ", ".join(short(commit) for commit in record["commits"]),
        "device": record["report"]["device"],
        "torch": record["report"]["versions"]["torch"],
        "sources": f"{len(record['sources'])} files under {record['results']}",
    }


rule report:
    input:
        expand(RESULTS + "/bench/speed/{mode}.csv", mode=["inference", "training"]),
        per_run(TRAIN_RECORD, TRAINED, SEEDS),
        per_run(CALIBRATION_REPORT, TEACHERS, TEACHER_SEEDS),
        per_run(FRONTIER_TABLE, TEACHERS, TEACHER_SEEDS),
        per_run(FRONTIER_PREDICTIONS, TEACHERS, TEACHER_SEEDS),
        per_run(FRONTIER_TIMINGS, TEACHERS, TEACHER_SEEDS),
        per_run(DOWNSTREAM_TABLE, DOWNSTREAM, TEACHER_SEEDS),
        per_run(FINETUNE_RECORD, FINETUNED, TEACHER_SEEDS),
    output:
        provenance=report(
            FIGURES + "/provenance.json",
            caption="workflow/report/provenance.rst",
            category="Provenance",
            labels=provenance_labels,
        ),
        figures=[report_item(name, "png", "figure", REPORT_FIGURES) for name in REPORT_FIGURES],
        tables=[report_item(name, "html", "table", REPORT_TABLES) for name in REPORT_TABLES],
        pdf=expand(FIGURES + "/{name}.pdf", name=REPORT_FIGURES),
        markdown_latex=expand(FIGURES + "/{name}.{suffix}", name=REPORT_TABLES, suffix=["md", "tex"]),
    log:
        RESULTS + "/logs/report.log",
    benchmark:
        RESULTS + "/jobs/report.tsv"
    shell:
        ASAP + " report --results " + RESULTS + " --out " + FIGURES + " " + GROUP + " > {log} 2>&1"
