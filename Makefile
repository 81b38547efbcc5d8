# Two self-contained entry points: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench bench-quick screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	MSE_HOME=.mse $(BIN)/mse run examples/review_loop.json --local
	MSE_HOME=.mse $(BIN)/mse runs list --limit 5 --local
	MSE_HOME=.mse $(BIN)/python examples/server_demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# Refresh the dashboard pictures under docs/img from the Playwright tests.
screenshots: $(STAMP)
	MSE_DOCS_SCREENSHOTS=1 $(BIN)/pytest -q tests/dashboard

bench-quick: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench --quick

# Every section of BENCHMARKS.md in one run (server, operators and dashboard included);
# `python -m bench --only NAME --write BENCHMARKS.md` refreshes one section and keeps the others.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench --write BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
