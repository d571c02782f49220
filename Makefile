# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: deps demo test test-unit test-integration lint typecheck bench package clean

$(STAMP_PY): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMP_PY) $(STAMP_NODE)

demo: deps
	$(PY) -m demo

test: deps lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: deps
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: deps
	$(PY) -m pytest -m "integration or e2e" $(PYTEST_ARGS)

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m bench

clean:
	rm -rf .localazure .build .pytest_cache .mypy_cache .ruff_cache
