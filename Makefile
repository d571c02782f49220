# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: deps demo test test-unit test-integration lint typecheck bench package clean

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
