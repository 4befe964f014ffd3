# Thin wrappers: every target sets up what it needs first, so each works on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup test lint unit demo simulate clean

$(VENV)/.installed: pyproject.toml
	@echo ">> creating virtualenv $(VENV) and installing azswitch with test extras"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/azswitch demo $(DEMO_ARGS)

# A throw-away kube-apiserver + etcd on loopback for trying things by hand (built once if not cached):
# `make control-plane`, then `eval "$(.venv/bin/azswitch control-plane env)"`; CP=down|status|env.
CP ?= up
control-plane: setup
	$(VENV)/bin/azswitch control-plane $(CP)

simulate: setup
	$(VENV)/bin/azswitch simulate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Benchmarks B1-B4 (bench/README.md): real control plane + simulator + operator; each prints a table with the
# machine it ran on. About 15 minutes on 2 cores; run on an otherwise idle machine. BENCH_ARGS go to every
# script (e.g. BENCH_ARGS="--markdown /tmp/bench.md"); a MISS is reported, a failed run makes the target fail.
BENCH_ARGS ?=
.PHONY: bench
bench: setup
	@status=0; for b in b1_overhead b2_idle b3_evacuation b4_restart b5_operator_failover b6_cold_start; do \
		$(PY) bench/$$b.py $(BENCH_ARGS) || status=1; \
	done; exit $$status
