# One obvious command per habit. Only Python 3.11+, Node.js 20+ and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
STAMP_CHROMIUM := .venv/.chromium

.PHONY: setup demo serve test lint typecheck check clean bench bench-tenants

setup: $(STAMP_PY) $(STAMP_NODE) $(STAMP_CHROMIUM)
	bash scripts/install-checkov.sh

$(STAMP_PY): requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c requirements.lock
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium, for the dashboard's browser test (root or CI installs it; others are told how).
$(STAMP_CHROMIUM): $(STAMP_PY)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "install Chromium: sudo apt-get install -y chromium (the dashboard test needs it)"; exit 1; fi; fi
	touch $@

## The main job: one apply-mode enforcement run of the demo tenant, printed.
demo: setup
	$(PY) -m localdev.demo $(if $(TENANTS),--tenants $(TENANTS))

## Development tool: the HTTP API and dashboard on 127.0.0.1:7071 (demo tenant, Azurite), until Ctrl-C.
serve: setup
	$(PY) -m localdev.serve $(if $(PORT),--port $(PORT))

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

## Benchmarks on generated tenants (BENCH_SIZES=S,M by default; L on request; BENCH_OUT=folder).
bench: setup
	$(PY) -m bench

## Many tenants through the run queue: 200 generated S tenants with 1, 2 and 4 worker processes
## (BENCH_TENANTS=N, BENCH_WORKERS=1,2,4; `python -m bench tenants --help` for the rest).
bench-tenants: setup
	$(PY) -m bench tenants
