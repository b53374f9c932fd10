# Two commands matter: `make demo` and `make test`. Each installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt functions/requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
# checkov lives in its own venv: it pins a python-hcl2 fork that conflicts with the tests' one.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)
ARCHIVE := infra/build/gtcoco-source.zip
TERRAFORM ?= terraform
export NO_GCE_CHECK := true
export CHECKPOINT_DISABLE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test lint typecheck infra-lint unit demo bench mutants archive deploy destroy clean

help:
	@echo "make demo   - run the pipeline end to end on a local storage emulator"
	@echo "make test   - lint, type-check and run every test"
	@echo "make bench  - benchmarks against the guide's algorithms"
	@echo "make mutants - break each safety guard once; the tests must notice (about an hour)"
	@echo "make deploy - build the function archive and terraform apply infra/ (needs gcloud auth)"

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
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

$(CHECKOV_STAMP): requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	touch $@

# Offline: --skip-download keeps checkov from fetching guidelines or policies.
infra-lint: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d infra --framework terraform --skip-download --quiet --compact

unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test: lint typecheck infra-lint unit

demo: $(STAMP)
	$(PY) -m demo

# Breaks each guard of SPEC §6/§7 once and checks the suite fails (about an hour).
mutants: $(STAMP)
	$(PY) -m tests.mutants $(ONLY)

bench: $(STAMP)
	$(PY) -m bench.vector
	$(PY) -m bench.raster
	$(PY) -m bench.pipeline

archive: $(STAMP)
	$(PY) -m infra.build_archive --out $(ARCHIVE)

# One command: build the archive (named by its MD5 in the bucket), then apply.
deploy: archive
	$(TERRAFORM) -chdir=infra init -input=false
	$(TERRAFORM) -chdir=infra apply

destroy:
	$(TERRAFORM) -chdir=infra destroy

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build *.egg-info .mypy_cache .ruff_cache demo-output
