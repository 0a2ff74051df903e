# repro-recsys: `make demo` bakes and runs a project; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := {{cookiecutter.project_slug}}/constraints.txt
# Where `make demo` bakes: the slug of the default answers.
DEMO := build/demo/my-recommender

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

$(BIN)/cookiecutter: requirements-dev.txt $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c '$(LOCK)' -r requirements-dev.txt
	@touch $@

setup: $(BIN)/cookiecutter  ## Create .venv with the pinned set

demo: setup  ## Bake a project with the default answers, install it and run its pipeline on synthetic data
	rm -rf build/demo
	$(BIN)/cookiecutter --no-input . --output-dir build/demo
	$(MAKE) -C $(DEMO) setup run
	@echo "The demo project is in $(DEMO): cd there and try 'make test' or '.venv/bin/my_recommender --help'."

test: setup  ## Run the whole test suite (template tests and the baked projects' own suites), two at a time
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: setup  ## Lint the template's own code
	$(BIN)/ruff check --config pyproject.toml .
	$(BIN)/ruff format --config pyproject.toml --check .

clean:  ## Remove the virtualenv and baked projects
	rm -rf $(VENV) build .pytest_cache .ruff_cache
