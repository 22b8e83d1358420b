# asap: from data to every table and figure.
#   make reproduce                                   # the default profile (offline, CPU)
#   snakemake --cores all --configfile experiments/paper.yaml   # paper scale (hub data, GPU, 3 seeds)
# Every rule calls the package's CLI; configuration lives in experiments/*.yaml.

import os
import sys


configfile: os.path.join(workflow.basedir, "experiments", "default.yaml")


PROFILE = config["profile"]  # training configs under experiments/<profile>/
RESULTS = config["results"]
RUNS = config["runs"]
DATA = config["data_dir"]
FIGURES = config["figures"]
TASKS, VARIANTS, SEEDS = config["tasks"], config["variants"], config["seeds"]
TEACHER_SEEDS = config.get("teacher_seeds", SEEDS[:1])
COMPILE = config["compile"]
BENCH = config["bench"]
SPEED = config["speed"]

# One job at a time by default: torch already uses every core, and two jobs sharing two cores thrash.
THREADS = config.get("threads_per_job", workflow.cores)
ASAP = f"{sys.executable} -m asap"  # the interpreter running the workflow, whatever PATH says
RUN_CHECKPOINT = RUNS + "/{task}/{variant}/seed{seed}/checkpoints/best.ckpt"
CHECKPOINT = RUNS + "/{task}/sinkhorn/seed{seed}/checkpoints/best.ckpt"  # the teacher's
COMPILED_MODEL = RUNS + "/{task}/compiled/seed{seed}.pt"
RAW_TIMINGS = RUNS + "/speed/{mode}.json"
COMPILE_ARGS = (
    f"--slices {COMPILE['slices']} --map {COMPILE['map']} --directions {COMPILE['directions']} "
    f"--calib-batches {COMPILE['calib_batches']}"
)

SPEED_ARGS = (
    f"--batch {SPEED['batch']} --heads {SPEED['heads']} --head-dim {SPEED['head_dim']} "
    f"--n-iters {SPEED['n_iters']} --slices {SPEED['slices']} "
    f"--sliced-max-len {SPEED['sliced_max_len']} --dense-max-len {SPEED['dense_max_len']}"
)


def numbers(values):
    return " ".join(str(v) for v in values)


# The runs behind the results (checkpoints, compiled models, raw timings) are not committed. Requiring them
# makes a fresh clone, which has the committed results but not their runs, regenerate everything; once they
# exist, a rerun does nothing.
RUN_ARTEFACTS = [
    *expand(RUN_CHECKPOINT, task=TASKS, variant=VARIANTS, seed=SEEDS),
    *expand(COMPILED_MODEL, task=TASKS, seed=TEACHER_SEEDS),
    *expand(RAW_TIMINGS, mode=["inference", "training"]),
]


rule all:
    input:
        FIGURES + "/provenance.json",
        RUN_ARTEFACTS,


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


rule train:
    input:
        DATA + "/prepared/" + PROFILE + "/{task}.json",
    output:
        record=RESULTS + "/train/{task}/{variant}/seed{seed}.json",
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


rule compile:
    input:
        CHECKPOINT,
    output:
        model=COMPILED_MODEL,
        report=RESULTS + "/compile/{task}/seed{seed}.csv",
    log:
        RESULTS + "/logs/compile/{task}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/compile/{task}/seed{seed}.tsv"
    threads: THREADS
    shell:
        ASAP + " compile --checkpoint {input} --data-dir " + DATA + " " + COMPILE_ARGS
        + " --out {output.model} --report {output.report} > {log} 2>&1"


rule frozen_benchmark:
    input:
        CHECKPOINT,
    output:
        RESULTS + "/bench/frozen/{task}/seed{seed}.csv",
    log:
        RESULTS + "/logs/bench/frozen/{task}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/frozen/{task}/seed{seed}.tsv"
    threads: THREADS
    params:
        seq_lens=numbers(BENCH["seq_lens"]),
    shell:
        ASAP + " bench frozen --checkpoint {input} --data-dir " + DATA + " " + COMPILE_ARGS
        + " --seq-lens {params.seq_lens} --min-run-time " + str(BENCH["min_run_time"])
        + " --out {output} > {log} 2>&1"


rule downstream:
    input:
        CHECKPOINT,
    output:
        RESULTS + "/bench/downstream/{task}/seed{seed}.csv",
    log:
        RESULTS + "/logs/bench/downstream/{task}/seed{seed}.log",
    benchmark:
        RESULTS + "/jobs/downstream/{task}/seed{seed}.tsv"
    threads: THREADS
    params:
        sizes=numbers(BENCH["calib_sizes"]),
        edges=numbers(BENCH["length_edges"]),
        slices=numbers(BENCH["slice_sweep"]),
    shell:
        ASAP + " bench downstream --checkpoint {input} --data-dir " + DATA + " " + COMPILE_ARGS
        + " --calib-sizes {params.sizes} --length-edges {params.edges} --slice-sweep {params.slices}"
        + " --max-test-batches " + str(BENCH["downstream_test_batches"]) + " --out {output} > {log} 2>&1"


rule speed:
    output:
        table=RESULTS + "/bench/speed/{mode}.csv",
        raw=RAW_TIMINGS,
    log:
        RESULTS + "/logs/bench/speed/{mode}.log",
    benchmark:
        RESULTS + "/jobs/speed/{mode}.tsv"
    threads: THREADS
    params:
        seq_lens=lambda wildcards: numbers(SPEED[wildcards.mode + "_seq_lens"]),
        training=lambda wildcards: "--training" if wildcards.mode == "training" else "",
    shell:
        ASAP + " bench speed {params.training} --seq-lens {params.seq_lens} " + SPEED_ARGS
        + " --min-run-time " + str(BENCH["min_run_time"]) + " --out {output.table} --raw {output.raw} > {log} 2>&1"


rule report:
    input:
        expand(RESULTS + "/bench/speed/{mode}.csv", mode=["inference", "training"]),
        expand(RESULTS + "/train/{task}/{variant}/seed{seed}.json", task=TASKS, variant=VARIANTS, seed=SEEDS),
        expand(RESULTS + "/compile/{task}/seed{seed}.csv", task=TASKS, seed=TEACHER_SEEDS),
        expand(RESULTS + "/bench/frozen/{task}/seed{seed}.csv", task=TASKS, seed=TEACHER_SEEDS),
        expand(RESULTS + "/bench/downstream/{task}/seed{seed}.csv", task=TASKS, seed=TEACHER_SEEDS),
    output:
        FIGURES + "/provenance.json",
    log:
        RESULTS + "/logs/report.log",
    benchmark:
        RESULTS + "/jobs/report.tsv"
    shell:
        ASAP + " report --results " + RESULTS + " --out " + FIGURES + " > {log} 2>&1"
