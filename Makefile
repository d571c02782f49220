# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: deps worker-deps demo test test-unit test-integration test-worker chaos lint typecheck bench package clean

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the cmk-rotation console script
	@touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMP_PY) $(STAMP_NODE)

# The worker lane: Python 3.13 with the real worker library (azure-functions-runtime) in .venv-worker.
# tests/worker/host.py starts the worker from it as the Functions host would. Found as python3.13 on
# PATH or under pyenv; the app's runtime dependencies come from requirements.txt without its
# azure-functions 1.x pin (see requirements-worker.txt).
PYTHON_WORKER ?= $(shell for p in python3.13 "$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 \
	"$$HOME"/.pyenv/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV_WORKER := .venv-worker
STAMP_WORKER := $(VENV_WORKER)/.installed

$(STAMP_WORKER): requirements.txt requirements-worker.txt
	@test -n "$(PYTHON_WORKER)" || { echo "need Python 3.13 (python3.13 on PATH or under pyenv) for the worker lane"; exit 1; }
	@test -x $(VENV_WORKER)/bin/python || $(PYTHON_WORKER) -m venv $(VENV_WORKER)
	grep -v '^azure-functions==' requirements.txt > $(VENV_WORKER)/app-requirements.txt
	$(VENV_WORKER)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r $(VENV_WORKER)/app-requirements.txt -r requirements-worker.txt
	@touch $@

worker-deps: $(STAMP_WORKER)

demo: deps worker-deps
	$(PY) -m demo

test: deps worker-deps lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

test-worker: deps worker-deps
	$(PY) -m pytest -m worker $(PYTEST_ARGS)

test-unit: deps
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: deps
	$(PY) -m pytest -m "integration or e2e" $(PYTEST_ARGS)

# Chaos (tests/chaos): N seeded runs of faults, racing triggers and SIGKILLs, then the reconciler heals.
# Seeds 1..SEEDS unless CHAOS_SEEDS lists them (comma-separated; a failure prints its own seed).
# `make test` runs the two fixed seeds in tests/chaos/test_chaos.py.
SEEDS ?= 20
CHAOS_SEEDS ?= $(shell seq -s, 1 $(SEEDS))
chaos: deps
	@echo "chaos seeds: $(CHAOS_SEEDS)"
	CHAOS_SEEDS=$(CHAOS_SEEDS) $(PY) -m pytest tests/chaos -m chaos $(PYTEST_ARGS)

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache  # import layers and no cycles: [tool.importlinter] in pyproject.toml

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m bench

clean:
	rm -rf .localazure .build .pytest_cache .mypy_cache .ruff_cache

# The deployment zip (.build/function.zip): the app plus requirements.txt's dependencies only, built
# for Linux x86-64 CPython 3.11 (see scripts/package.py and docs/deploy.md). Prints its size.
package: $(STAMP_PY)
	$(PY) scripts/package.py

# IaC scan of infra/ (Bicep and ARM JSON) with checkov, in its own venv: it is heavy and pins its
# own dependencies. Every skipped check carries its reason inline in the templates.
CHECKOV_VERSION := 3.3.30
VENV_CHECKOV := .venv-checkov
STAMP_CHECKOV := $(VENV_CHECKOV)/.installed-$(CHECKOV_VERSION)

$(STAMP_CHECKOV):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(VENV_CHECKOV)/bin/python || $(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

.PHONY: iac-scan
iac-scan: $(STAMP_CHECKOV)
	LOG_LEVEL=ERROR $(VENV_CHECKOV)/bin/checkov --directory infra --framework arm bicep \
		--skip-download --compact --quiet
