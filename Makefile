# Two commands matter: `make demo` and `make test`. Each installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt functions/requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
export NO_GCE_CHECK := true
export CHECKPOINT_DISABLE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test lint typecheck unit demo bench clean

help:
	@echo "make demo   - run the pipeline end to end on a local storage emulator"
	@echo "make test   - lint, type-check and run every test"
	@echo "make bench  - benchmarks against the guide's algorithms"

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared functions

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test: lint typecheck unit

demo: $(STAMP)
	$(PY) -m demo

bench: $(STAMP)
	$(PY) -m bench.vector
	$(PY) -m bench.raster

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache demo-output
