# The two commands: `make test` and `make book`. Each sets up .venv first (torch pinned and
# installed before anything that depends on it, so pip never pulls a CUDA build).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
PYTEST_ARGS ?=
# e.g. make lab LAB_ARGS="--no-browser --port=8899 --IdentityProvider.token=secret"
LAB_ARGS ?=

.PHONY: test book lab lint clean-book setup

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-compile: no bytecode for the thousands of modules of torch and the other packages up
# front (what is imported is compiled on first use)
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile torch==2.13.0
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet --no-compile -e ".[dev]"
	touch $@

$(VENV)/.book: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet --no-compile -e ".[book,dev]"
	touch $@

$(VENV)/.lab: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet --no-compile -e ".[lab,book,dev]"
	touch $@

setup: $(VENV)/.dev

# two pytest workers (pytest-xdist): the tests run one torch thread each, so two share the
# 2 cores the suite is sized for; a module marked xdist_group (the notebooks) stays on one
# worker; PYTEST_ARGS="-n 0" runs them in one process
test: $(VENV)/.dev
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

# Executes every notebook with papermill (PROFILE=cpu by default; results cached under
# artifacts/), then renders the executed copies with jupyter-book, warnings as errors.
book: $(VENV)/.book
	$(BIN)/python -m rnnpose.book --profile $(PROFILE)

lab: $(VENV)/.lab
	$(BIN)/jupyter lab notebooks/ $(LAB_ARGS)

clean-book:
	rm -rf _build book/executed
