# One command to run, one to test. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test check bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## run: the orchestrator (embedded SQLite) + the example app, registered together
run: setup
	$(PY) -m examples.functions.dev

## test: the whole suite (unit, end-to-end with real servers, SQLite and PostgreSQL), in
## three workers (pytest-xdist; a test file stays on one worker: its fixtures are shared)
test: setup
	$(PY) -m pytest -n 3 --dist loadfile

## check: lint and types
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## bench: the benchmarks recorded in docs/benchmarks.md
bench: setup
	$(PY) -m bench.core
	$(PY) -m bench.triggers

clean:
	rm -rf $(VENV) .durable .pytest_cache .mypy_cache .ruff_cache
