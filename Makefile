# llmd-rollout developer commands. Every target that runs code first makes sure .venv exists and
# is installed; on an installed tree that check takes well under a second.
#
#   make demo    run the demo: Temporal, a simulated H200 cluster, a worker, a rollout and an
#                upgrade (DEMO_ARGS=--exit stops at the end instead of waiting for Ctrl-C)
#   make test    run the test suite (without the long fault-matrix cells and long scenarios)
#   make test-long  the long end-to-end scenarios: many targets on one cluster, fleets over
#                several clusters, analysis gates, worker kills in every phase
#   make test-rbac  every worker-chart RBAC rule left out in turn (the least-privilege table)
#   make test-scale fifty concurrent rollouts on one worker and exactly enough GPUs
#   make chaos   run the whole fault matrix: installs under each API-server fault
#   make lint    ruff, mypy --strict and the import-layer contracts
#   make bench   run the benchmarks in bench/
#   make clean   remove .venv and every cache

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful `pip install`; pip runs again only when a pyproject.toml is newer.
# clustersim is a distribution of its own (clustersim/pyproject.toml), installed editable beside
# the product so `python -m clustersim` runs from the same venv; the product's wheel never has it.
INSTALL_STAMP := $(VENV)/.llmd-install-stamp

PRODUCT_PACKAGES := spec workflows activities k8s helmcli vllmsignals manifests embedded rollouts cli
space := $(subst ,, )
CLUSTERSIM_PACKAGE := clustersim/src/clustersim
ENTRY_POINTS := worker.py starter.py
PYTEST_ARGS ?=
DEMO_ARGS ?=
# The suites run on this many pytest processes (pytest-xdist); 1 runs them in this one. Their
# tests mostly wait on servers, timers and child processes (one process kept a 2-core machine
# about 30 % busy), so two halve `make test`. `loadfile` keeps a file's tests on one process,
# where its module fixtures (a clustersim, a worker) are built once; the one-file suites split
# by test, each process building its own.
TEST_PROCESSES ?= 2
ifeq ($(TEST_PROCESSES),1)
BY_FILE :=
BY_TEST :=
else
BY_FILE := -n $(TEST_PROCESSES) --dist loadfile
BY_TEST := -n $(TEST_PROCESSES) --dist load
endif

.PHONY: venv test test-long test-scale test-rbac chaos lint demo bench clean

venv: $(INSTALL_STAMP)
	$(BIN)/python scripts/install_tools.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml clustersim/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e './clustersim[test]' -e '.[dev]'
	touch $@

test: venv
	$(BIN)/pytest $(BY_FILE) $(PYTEST_ARGS)

test-long: venv
	$(BIN)/pytest $(BY_FILE) -m "long and not scale" $(PYTEST_ARGS)

# Fifty concurrent rollouts on exactly enough GPUs (tests/workflows/test_e2e_multi.py).
test-scale: venv
	$(BIN)/pytest -m scale tests/workflows/test_e2e_multi.py $(PYTEST_ARGS)

# The whole fault matrix; CI passes CHAOS_CELLS=chaos, the cells `make test` has not run.
CHAOS_CELLS ?= chaos or not chaos
chaos: venv
	$(BIN)/pytest $(BY_TEST) -m "$(CHAOS_CELLS)" tests/workflows/test_fault_matrix.py $(PYTEST_ARGS)

# The whole least-privilege table: each worker-chart RBAC rule left out in turn, a fresh
# clustersim per rule (~5 min idle), and the scenarios with every rule; `-raP` shows each rule's
# RBAC-TABLE line (a passed test's output) from whichever process ran it.
test-rbac: venv
	$(BIN)/pytest $(BY_TEST) -m rbac_table -raP tests/workflows/test_e2e_rbac.py $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy --strict $(PRODUCT_PACKAGES) $(ENTRY_POINTS) scripts/install_tools.py
	$(BIN)/mypy --strict $(CLUSTERSIM_PACKAGE)
	$(BIN)/lint-imports
	@# import-linter graphs packages only; the entry points are modules, so their rules are
	@# checked here: nothing imports worker/starter, and they do not import clustersim.
	@if grep -rnE '^[[:space:]]*(from|import)[[:space:]]+(worker|starter)([[:space:].,]|$$)' \
		--include='*.py' $(PRODUCT_PACKAGES); then \
		echo "lint: the packages above import an entry point (worker.py/starter.py)"; exit 1; fi
	@if grep -nE '^[[:space:]]*(from|import)[[:space:]]+clustersim([[:space:].,]|$$)' \
		$(ENTRY_POINTS); then \
		echo "lint: an entry point imports clustersim; the product must not"; exit 1; fi
	@# clustersim is a distribution of its own: its tests import nothing of the product either,
	@# and the product's tests and benchmarks run it only through embedded/clustersim_process.py.
	@if grep -rnE '^[[:space:]]*(from|import)[[:space:]]+($(subst $(space),|,$(PRODUCT_PACKAGES))|tests|worker|starter)([[:space:].,]|$$)' \
		--include='*.py' clustersim; then \
		echo "lint: clustersim (above) imports the product; it must stand alone"; exit 1; fi
	@if grep -rnE '^[[:space:]]*(from|import)[[:space:]]+clustersim([[:space:].,]|$$)' \
		--include='*.py' tests bench; then \
		echo "lint: a test or benchmark imports clustersim; run it through" \
			"embedded/clustersim_process.py"; exit 1; fi

demo: venv
	$(BIN)/llmd-rollout demo $(DEMO_ARGS)

bench: venv
	@shopt -s nullglob; benchmarks=(bench/*.py); \
	if (( $${#benchmarks[@]} == 0 )); then echo "bench: no benchmarks in bench/ yet"; exit 1; fi; \
	for benchmark in "$${benchmarks[@]}"; do $(BIN)/python "$$benchmark"; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
