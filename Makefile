# Two commands on a fresh machine (python3 and make only): `make test` and `make reproduce`.
# uv is installed on first use and builds .venv from the committed uv.lock.

UV := python3 -m uv
VENV_STAMP := .venv/.synced-$(shell python3 -c "import hashlib;print(hashlib.sha256(open('uv.lock','rb').read()).hexdigest()[:12])")
export WANDB_MODE ?= offline
export UV_LINK_MODE ?= copy

.PHONY: install test test-fast reproduce lint clean

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

clean:
	rm -rf .venv .pytest_cache .snakemake
