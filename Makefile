# Everything a fresh machine needs is installed by `make setup` (Python venv with
# the package and its test/dev extras, the Node OAuth server for the tests).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.syncd-installed

.PHONY: setup demo test lint unit integration bench bench-smoke clean

setup: $(STAMP)
	@VENV=$(VENV) bash tests/peers/install.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	@touch $(STAMP)

## demo: run the daemon end to end against a local OAuth server for about a minute
demo: setup
	$(BIN)/python demo/run.py

## test: static checks, then the whole test suite (what CI runs). Any skipped,
## xfailed or xpassed test fails it unless tests/skip_allowlist.txt lists it with
## the reason (tests/skip_guard.py); -r lists each one with its reason.
test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -r fEsxX

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy syncd
	$(BIN)/bandit -q -r syncd -c pyproject.toml
	bash scripts/audit-deps.sh

unit: setup
	$(BIN)/python -m pytest -q -r fEsxX tests/unit

integration: setup
	$(BIN)/python -m pytest -q -r fEsxX tests/integration

## bench: the benchmark harness; writes docs/benchmarks.md
bench: setup
	$(BIN)/python -m bench

## bench-smoke: every benchmark case for a second or two (does the harness still work?); writes nothing in the repo
bench-smoke: setup
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) demo-out .bench-out .mypy_cache .ruff_cache .pytest_cache
