# BatchBridge - the commands a person wants. Every target sets up what it needs first.
SHELL := /bin/bash
export PYENV_VERSION ?= 3.13.0
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
PYTHON_BOOT ?= $(shell command -v python3.13 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/layers/shared:$(CURDIR)/local:$(CURDIR)

.PHONY: help setup demo test test-fast lint typecheck validate build bench lock clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock
	@test -x $(BIN)/python || $(PYTHON_BOOT) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 13), f"need Python 3.13, got {sys.version}"'
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9 || $(BIN)/python -m pip install --quiet uv
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.lock
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv and install the locked dependencies

demo: $(STAMP)  ## run a real iVvy batch end to end on the local stack
	@$(BIN)/python -m batchbridge_local demo $(ARGS)

test: $(STAMP)  ## lint, validate the template, and run every test
	@$(MAKE) --no-print-directory lint typecheck validate
	@$(BIN)/pytest -n 2 --dist loadgroup -q

test-fast: $(STAMP)  ## unit and integration tests only
	@$(BIN)/pytest -q tests/unit tests/integration

lint: $(STAMP)  ## ruff
	@$(BIN)/ruff check layers local functions tests benchmarks

typecheck: $(STAMP)  ## mypy (strict on the shared package)
	@$(BIN)/mypy layers/shared/batchbridge

validate: $(STAMP)  ## sam validate --lint
	@$(BIN)/sam validate --lint

build: $(STAMP)  ## sam build (arm64 layer and functions)
	@$(BIN)/sam build

bench: $(STAMP)  ## polling cost benchmark
	@$(BIN)/python -m benchmarks.polling_cost

lock:  ## re-resolve requirements/dev.lock from requirements/dev.in
	@$(BIN)/uv pip compile requirements/dev.in -o requirements/dev.lock --python-version 3.13

clean:  ## remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache
