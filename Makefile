# Switchboard — developer entry points. GNU make.
#   make run    install into .venv and start the server with ./var/ (created on first start)
#   make test   install test dependencies (Python and Debian packages) and run the whole suite
#   make check  lint, format check, mypy --strict on every package (tests and bench too), then
#               the tests

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: help run test test-deps check lint format typecheck bench venv

help:
	@echo "make run        start switchboard (config in ./var/, created on first start)"
	@echo "make test       install test deps (pip + apt) and run the whole test suite"
	@echo "make check      ruff, ruff format --check, mypy --strict (every package), tests"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make format     ruff format + ruff check --fix"
	@echo "make typecheck  mypy --strict on pbx media acd ivr recorder crm config cli web app tests bench"
	@echo "make bench      run bench/*.py"

venv: $(PY)

$(PY):
	scripts/ensure-venv.sh $(VENV)

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/switchboard serve

test-deps: $(VENV)/.installed-test
	scripts/install-test-deps.sh

test: test-deps
	$(BIN)/pytest -q --durations=30

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy pbx media acd ivr recorder crm config cli web app tests bench

check: lint typecheck test

# Benchmarks are never part of `make test`; each script prints its own ratios.
bench: $(VENV)/.installed-test
	@found=0; for f in bench/*.py; do \
	  case "$$(basename "$$f")" in _*|conftest.py) continue;; esac; \
	  [ -e "$$f" ] || continue; found=1; echo "== $$f"; $(PY) "$$f"; \
	done; [ $$found = 1 ] || echo "no benchmarks in bench/ yet"
