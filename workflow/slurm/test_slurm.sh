#!/usr/bin/env bash
# `make test-slurm`: the mini profile through the SLURM profile on a real one-node cluster (local_cluster.sh),
# in a scratch copy of the repository, then checks that every output exists and lists, from sacct, the jobs
# that ran through sbatch. Fails when the workflow, an output or a job fails. Needs root (it starts the cluster).
#   workflow/slurm/test_slurm.sh [SCRATCH]    (default: a new mktemp -d directory, kept for inspection)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
snakemake=${SNAKEMAKE:-$root/.venv/bin/snakemake}
[[ -x "$snakemake" ]] || { echo "test_slurm.sh: error: no $snakemake (run make install)" >&2; exit 1; }
started=$(date +%s)
since=$(date +%Y-%m-%dT%H:%M:%S)

"$root/workflow/slurm/local_cluster.sh" up

# The repository as git sees it (tracked files plus new files that are not ignored, as they are on disk), not
# the ignored data/, runs/, .venv/ or .snakemake/: the run starts from nothing, like on a fresh clone.
scratch=${1:-$(mktemp -d /tmp/asap-slurm.XXXXXX)}
mkdir -p "$scratch"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --files-from=- --ignore-failed-read -cf -) | tar -xf - -C "$scratch"
echo "test_slurm.sh: running the mini profile through sbatch in $scratch"
cd "$scratch"

profiles=(--profile workflow/profiles/slurm --profile workflow/slurm/local)
status=0
"$snakemake" "${profiles[@]}" --configfile experiments/mini.yaml 2>&1 | tee snakemake.log || status=$?
elapsed=$(($(date +%s) - started))

# Every job of this run went to sbatch with the run's id as its name and rule_<rule>[_wildcards_...] as its
# comment; sacct lists them (-X: the allocations, not their steps).
echo "test_slurm.sh: jobs that ran through sbatch since $since (sacct):"
sacct -X -S "$since" --format=JobID,JobName%36,Comment%50,Partition,Account,AllocCPUS,ReqMem,Elapsed,State,ExitCode \
    | tee sacct.txt
[[ $status -eq 0 ]] || { echo "test_slurm.sh: error: snakemake failed (exit $status), see $scratch/snakemake.log" >&2; exit "$status"; }

submitted=$(grep -c '^rule_' <(sacct -X -n -P -S "$since" --format=Comment) || true)
completed=$(sacct -X -n -P -S "$since" --format=Comment,State | grep -c '^rule_.*|COMPLETED$' || true)
# The DAG's jobs, less the target rule `all`, which runs no command and is never submitted.
"$snakemake" "${profiles[@]}" --configfile experiments/mini.yaml --forceall -n --quiet rules > dag.txt 2>&1 \
    || { echo "test_slurm.sh: error: the dry run that counts the DAG's jobs failed, see $scratch/dag.txt" >&2; exit 1; }
# (the first table is the job stats; the dry run prints it twice)
expected=$(awk '$1 == "total" && !seen {print $2; seen = 1}' dag.txt)
expected=$((${expected:-0} - 1))
echo "test_slurm.sh: $completed of $submitted sbatch jobs COMPLETED; the DAG has $expected jobs to submit"
[[ $completed -ge $expected && $expected -gt 0 ]] \
    || { echo "test_slurm.sh: error: expected $expected COMPLETED sbatch jobs, sacct has $completed" >&2; exit 1; }

# Every output of the DAG exists and is up to date (--summary: status `ok`, plan `no update`), and a dry run
# has nothing left to do.
"$snakemake" --cores 1 --configfile experiments/mini.yaml --summary > summary.tsv 2> summary.log \
    || { echo "test_slurm.sh: error: snakemake --summary failed, see $scratch/summary.log" >&2; exit 1; }
missing=$(awk -F'\t' 'NR > 1 && ($5 != "ok" || $6 != "no update")' summary.tsv)
[[ -z "$missing" ]] || { echo "test_slurm.sh: error: outputs missing or out of date:" >&2; echo "$missing" >&2; exit 1; }
"$snakemake" --cores 1 --configfile experiments/mini.yaml -n > rerun.txt 2>&1 || true
grep -q 'Nothing to be done' rerun.txt \
    || { echo "test_slurm.sh: error: a dry run after the workflow still has jobs to do, see $scratch/rerun.txt" >&2; exit 1; }
echo "test_slurm.sh: all $(($(wc -l < summary.tsv) - 1)) outputs exist; wall time ${elapsed} s (cluster start + workflow)"
