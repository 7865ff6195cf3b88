# The two commands a newcomer needs: `make run` and `make test`.
# Everything installs into a local virtualenv ($(VENV)); pyproject.toml is the one list of dependencies.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch lies on this project's build machines; on a GPU host, set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0
# Optional: an index to take torch from (e.g. https://download.pytorch.org/whl/cpu for the CPU build).
TORCH_INDEX ?=
TORCH_INSTALL = $(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint venv venv-dev bench clean demo-model

run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(TORCH_INSTALL)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	$(TORCH_INSTALL)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

# Retrain the bundled demo model from Python's own docstrings (about 3 minutes on 2 idle cores; seed 0 gives a model
# of the same quality, not necessarily the same bytes: see docs/worker.md).
demo-model: $(VENV)/.installed
	$(BIN)/python -m inference train-demo --seed 0

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
