#!/usr/bin/env bash
# Wheels the GPU machine needs to run the workflow (it has torch, timm, lightning, pandas, matplotlib and
# pytest, but no Snakemake and no network): Snakemake and everything it requires, resolved for that machine's
# Python with the versions of uv.lock where they apply. Binary wheels for its platform where PyPI has them,
# else built here from the sdist (pure Python). PuLP (16 MB: the ILP scheduler's solver) is left out: pieces run
# with --scheduler greedy. Usage: workflow/gpu/wheels.sh [DEST] (default .whl).
set -euo pipefail
dest=${1:-.whl}
python_version=${GPU_PYTHON:-3.12}
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
uv="python3 -m uv"
$uv export --frozen --no-hashes --no-emit-project --no-header --no-annotate -q > "$work/locked.txt"
grep '^snakemake==' "$work/locked.txt" > "$work/wanted.txt"
$uv pip compile "$work/wanted.txt" --constraint "$work/locked.txt" --python-version "$python_version" \
    --python-platform x86_64-manylinux_2_28 --no-header --no-annotate -q -o "$work/closure.txt"
while read -r requirement; do
    [[ -z "$requirement" || "$requirement" == \#* || "$requirement" == pulp==* ]] && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
        "${platforms[@]}" -d "$dest" "$requirement" 2>/dev/null \
        || python3 -m pip wheel -q --no-deps -w "$dest" "$requirement"
done < "$work/closure.txt"
echo "$(ls "$dest" | wc -l) wheels in $dest ($(du -sh "$dest" | cut -f1))"
