# repro-recsys: `make demo` bakes and runs a project; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tooling lock of the Python the environment is made with (requirements/tooling-py3.X.txt; scripts/lock.sh).
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCK := requirements/tooling-py$(PY_VERSION).txt
PIP := $(BIN)/python -m pip
# Where `make demo` bakes: the slug of the default answers.
DEMO := build/demo/my-recommender

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

# Baking needs cookiecutter alone (`make demo`); the tests need the rest of the tooling and the project's stack.
$(BIN)/cookiecutter: $(wildcard $(LOCK))  # a missing lock: the recipe says so
	@test -n "$(PY_VERSION)" || { echo "'$(PYTHON)' does not run: name a Python, e.g. make setup PYTHON=python3.12" >&2; exit 1; }
	@test -f $(LOCK) || { echo "No tooling lock for Python $(PY_VERSION): requirements/ has $$(ls requirements)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(LOCK) cookiecutter
	@touch $@

$(VENV)/.tooling-installed: $(BIN)/cookiecutter requirements/tooling.in requirements/project-stack.in $(wildcard $(LOCK))
	@echo "Installing the tooling and the project's stack ($(LOCK)): a few minutes the first time (torch)"
	$(PIP) install --progress-bar on -c $(LOCK) -r requirements/tooling.in -r requirements/project-stack.in
	@touch $@

setup: $(VENV)/.tooling-installed  ## Create .venv with the locked tooling (requirements/tooling-py3.X.txt)

demo: $(BIN)/cookiecutter  ## Bake a project with the default answers, install it and run its pipeline on synthetic data
	rm -rf build/demo
	$(BIN)/cookiecutter --no-input . --output-dir build/demo
	$(MAKE) -C $(DEMO) setup run
	@echo "The demo project is in $(DEMO): cd there and try 'make test' or '.venv/bin/my_recommender --help'."

test: setup  ## Run the whole test suite (template tests and the baked projects' own suites), three at a time
	$(BIN)/python -m pytest -n 3 --dist loadgroup

lint: setup  ## Lint the template's own code
	$(BIN)/ruff check --config pyproject.toml .
	$(BIN)/ruff format --config pyproject.toml --check .

clean:  ## Remove the virtualenv and baked projects
	rm -rf $(VENV) build .pytest_cache .ruff_cache
