# caseloop — one set of commands for developers and CI. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/events services/intake services/triage services/dispatch services/supervision deploy
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast fmt lint typecheck schemas asyncapi bench clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@command -v $(PYTHON) >/dev/null || { echo "caseloop needs $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned dependencies and the workspace

run: install ## start a local broker and the four services on SQLite under ./data (Ctrl-C stops)
	$(BIN)/python -m caseloop_deploy.run

test: install ## the whole test suite: unit, integration (SQLite, PostgreSQL), end-to-end (noida-db, Tansu)
	$(BIN)/python -m pytest -q

test-fast: install ## unit, contract and SQLite integration tests (no PostgreSQL, no end-to-end)
	$(BIN)/python -m pytest -q -m "not e2e and not postgres" libs services

fmt: install ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: install ## ruff, and lint-imports (the layers of pyproject.toml's [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install ## mypy --strict
	$(BIN)/mypy libs/events/src services/*/src deploy/src

schemas: install ## export the JSON Schema of every event type and refresh the golden samples
	$(BIN)/python -m caseloop_events.contracts.schema --schemas libs/events/schemas --samples libs/events/golden

asyncapi: install ## write docs/asyncapi.yaml, the AsyncAPI 3.0 document of the topics, from the event contracts
	$(BIN)/python -m caseloop_deploy.asyncapi --output docs/asyncapi.yaml

bench: install ## the benchmark: PostgreSQL and SQLite runs, bench-results/<time>/report.json and bench.png (BENCH_ARGS=--help)
	$(BIN)/python -m caseloop_deploy.bench $(BENCH_ARGS)

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) data
