# memctl's two commands for a fresh machine are `make demo` and `make test`;
# both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev demo test lint typecheck bench soak check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/python -m memctl.demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check memctl tests bench examples
	$(BIN)/ruff format --check memctl tests bench examples

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# memctl is installed editable, so unlike a pip install nothing compiles its
# bytecode, and where PYTHONDONTWRITEBYTECODE is set (this machine sets it)
# every memctl process compiled its modules again: 45 ms of each start. The
# benchmarks measure memctl as installed, so compile it first, as pip would.
bench: $(DEV_STAMP)
	$(BIN)/python -m compileall -q memctl
	$(BIN)/python -m bench

soak: $(DEV_STAMP)
	MEMCTL_SOAK=1 $(BIN)/python -m pytest -q tests/test_recovery.py

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache memctl/__pycache__
