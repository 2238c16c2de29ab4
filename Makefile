# One obvious command per habit. Only Python 3.11+, Node.js 20+ and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: setup demo test test-fast lint typecheck check clean

setup: $(STAMP_PY) $(STAMP_NODE)
	bash scripts/install-checkov.sh

$(STAMP_PY): requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements.lock
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The main job: one apply-mode enforcement run of the demo tenant, printed.
demo: setup
	$(PY) -m localdev.demo

## Every test: unit, simulator over HTTP, engine end to end against the simulator and Azurite.
test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) node_modules .run .pytest_cache .mypy_cache .ruff_cache
