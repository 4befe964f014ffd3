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

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/azswitch demo $(DEMO_ARGS)

simulate: setup
	$(VENV)/bin/azswitch simulate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
