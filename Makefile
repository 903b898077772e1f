# BatchBridge - the commands a person wants. Every target sets up what it needs first.
SHELL := /bin/bash
export PYENV_VERSION ?= 3.13.0
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
PYTHON_BOOT ?= $(shell command -v python3.13 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/layers/shared:$(CURDIR)/local:$(CURDIR)/client:$(CURDIR)

.PHONY: help setup demo test test-fast mutants fault-matrix lint typecheck validate build lock clean diagram openapi
.PHONY: bench bench-smoke bench-memory bench-uploads bench-scale bench-cold bench-cpu
.PHONY: security cfn-lint checkov audit lock-tools

# checkov pins versions that clash with aws-sam-cli's, so it lives in a venv of its own.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed-$(shell cat requirements/tools.lock | sha1sum | cut -c1-12)

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock
	@test -x $(BIN)/python || $(PYTHON_BOOT) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 13), f"need Python 3.13, got {sys.version}"'
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9 || $(BIN)/python -m pip install --quiet uv
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements/dev.lock
	@# The project itself, editable and without further dependencies: the `batchbridge` command and the
	@# pytest plugin's entry point, reading this checkout.
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv and install the locked dependencies

$(TOOLS_STAMP): requirements/tools.lock | $(STAMP)
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON_BOOT) -m venv $(TOOLS_VENV)
	@$(BIN)/uv pip install --quiet --python $(TOOLS_VENV)/bin/python -r requirements/tools.lock
	@rm -f $(TOOLS_VENV)/.installed-* && touch $@

demo: $(STAMP)  ## run a real iVvy batch end to end on the local stack
	@$(BIN)/python -m batchbridge_local demo $(ARGS)

test: $(STAMP)  ## lint, validate the template, and run every test
	@$(MAKE) --no-print-directory lint typecheck validate
	@$(BIN)/pytest -n 2 --dist loadgroup -q --durations=15

test-fast: $(STAMP)  ## unit and integration tests only
	@$(BIN)/pytest -q tests/unit tests/integration

fault-matrix: $(STAMP)  ## every cell of the fault matrix (make test runs a fixed cross-section)
	@FAULT_MATRIX=full $(BIN)/pytest -n 2 --dist loadgroup -q -rf tests/workflow/test_fault_matrix.py $(ARGS)

lint: $(STAMP)  ## ruff
	@$(BIN)/ruff check layers local client functions tests benchmarks

typecheck: $(STAMP)  ## mypy (strict on the shared package and the client)
	@$(BIN)/mypy layers/shared/batchbridge client/batchbridge_client

validate: $(STAMP)  ## sam validate --lint
	@$(BIN)/sam validate --lint

mutants: $(STAMP)  ## remove or weaken each lifecycle guard in a copy of the code; its tests must fail (about 10 minutes)
	@$(BIN)/python -m batchbridge_local.mutants $(ARGS)

diagram: $(STAMP)  ## redraw README.md's workflow diagram from statemachine/batch.asl.json
	@$(BIN)/python -m batchbridge_local.diagram

openapi: $(STAMP)  ## regenerate schemas/openapi.v1.json from the api function's routes and models
	@$(BIN)/python -m batchbridge_local.openapi

build: $(STAMP)  ## sam build (arm64 layer and functions)
	@$(BIN)/sam build

bench: $(STAMP)  ## polling cost benchmark: every mix, 1,000 jobs each, cold, learned and the ceiling (a minute or two)
	@$(BIN)/python -m benchmarks.polling_cost $(ARGS)

bench-cpu: $(STAMP)  ## collect CPU per record against a json round trip of the same records (under a minute)
	@$(BIN)/python -m benchmarks.collect_cpu $(ARGS)

bench-scale: $(STAMP)  ## file batches of 1,000, 10,000 and 100,000 iVvy jobs end to end: phases, memory, cost per 1,000 jobs (several minutes)
	@$(BIN)/python -m benchmarks.scale $(ARGS)

bench-uploads: $(STAMP)  ## upload validation: lines/s against json.loads, and peak memory (under a minute)
	@$(BIN)/python -m benchmarks.upload_validation $(ARGS)

bench-memory: $(STAMP)  ## collect-step peak memory at 1,000 and 10,000 outcomes (a few minutes)
	@$(BIN)/python -m benchmarks.collect_memory $(ARGS)

bench-cold: $(STAMP)  ## each handler's cold import vs import boto3, and the layer's size (about 2 minutes)
	@$(BIN)/python -m benchmarks.cold_import $(ARGS)

bench-smoke: $(STAMP)  ## the small form of every benchmark the README quotes (CI runs it)
	@$(BIN)/python -m benchmarks.polling_cost --quick
	@$(BIN)/python -m benchmarks.collect_memory --quick
	@$(BIN)/python -m benchmarks.cold_import --quick
	@$(BIN)/python -m benchmarks.collect_cpu --quick
	@$(BIN)/python -m benchmarks.upload_validation --lines 20000
	@$(BIN)/python -m benchmarks.post_speed --quick
	@$(BIN)/python -m benchmarks.scale --sizes 1000

# The layer's lock: what requirements/runtime.in needs at the versions dev.lock tests, for the functions'
# platform, less what the python3.13 runtime provides (requirements/lambda-runtime.txt) and less anyio,
# which httpx declares for its async client only: the functions use the sync one, and httpcore imports
# anyio (and asyncio with it) on its first request whenever it is installed.
LAYER_LEFT_OUT = $(shell sed -n 's/==.*//p' requirements/lambda-runtime.txt) anyio
lock:  ## re-resolve requirements/dev.lock from requirements/dev.in, then the layer's lock from it
	@$(BIN)/uv pip compile requirements/dev.in -o requirements/dev.lock --python-version 3.13
	@$(BIN)/uv pip compile requirements/runtime.in -c requirements/lambda-runtime.txt -c requirements/dev.lock \
		$(foreach p,$(LAYER_LEFT_OUT),--no-emit-package $(p)) --python-version 3.13 \
		--python-platform aarch64-manylinux2014 --generate-hashes -o layers/shared/requirements.txt
	@$(BIN)/uv pip compile requirements/signing.in -c requirements/lambda-runtime.txt -c requirements/dev.lock \
		--python-version 3.13 --python-platform aarch64-manylinux2014 --generate-hashes \
		-o layers/shared/signing-requirements.txt

security: $(STAMP) $(TOOLS_STAMP)  ## cfn-lint, checkov and pip-audit; any finding fails
	@$(MAKE) --no-print-directory cfn-lint checkov audit

cfn-lint: $(STAMP)  ## cfn-lint on template.yaml, informational rules included
	@$(BIN)/cfn-lint --include-checks I -- template.yaml

checkov: $(STAMP) $(TOOLS_STAMP)  ## checkov on the template as written and as SAM transforms it
	@$(BIN)/python -m batchbridge_local.sam_transform template.yaml .aws-sam/checkov/template.json
	@$(TOOLS_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f template.yaml -f .aws-sam/checkov/template.json

# pip-audit asks PyPI's per-release JSON API (pypi.org/pypi/<name>/<version>/json) about each pin; with
# --strict a pin it could not look up fails the run. When that API cannot be reached at all the audit
# fails too, loudly; AUDIT_UNREACHABLE=warn turns only that case into a warning (a found vulnerability
# always fails).
AUDIT_UNREACHABLE ?= fail
AUDIT_PROBE := https://pypi.org/pypi/pip/25.0/json
audit: $(STAMP)  ## pip-audit every locked pin (dev, layer, tools) against PyPI's advisories
	@if ! $(BIN)/python -c "import urllib.request as r; r.urlopen('$(AUDIT_PROBE)', timeout=15)" 2>/dev/null; \
	then \
		echo "pip-audit CANNOT RUN: PyPI's vulnerability API ($(AUDIT_PROBE)) is not reachable from here," \
			"so no pin was checked for known vulnerabilities." >&2; \
		test "$(AUDIT_UNREACHABLE)" = warn || exit 1; \
	else \
		$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
			-r requirements/dev.lock -r layers/shared/requirements.txt -r layers/shared/signing-requirements.txt \
			-r requirements/tools.lock \
		|| { echo "pip-audit FAILED: a pin has a known vulnerability, or could not be looked up (see the" \
			"lines above). Bump the pin in requirements/*.in and re-lock (make lock / make lock-tools)." >&2; \
			exit 1; }; \
	fi

lock-tools:  ## re-resolve requirements/tools.lock (checkov) from requirements/tools.in
	@$(BIN)/uv pip compile requirements/tools.in -o requirements/tools.lock --python-version 3.13

clean:  ## remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache
