# Two commands on a fresh machine: `make book` and `make test`.
# Both create the virtual environment from the project's own pinned files when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= quick

.PHONY: install test test-fast test-native book html lab bench clean-book

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements-lock.txt -e '.[book,dev,deploy]'
	$(VENV)/bin/depthlib lab --install-only
	touch $(STAMP)

install: $(STAMP)

## make test: the whole test suite, notebooks under the smoke profile and the book build included.
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -m "not native"

## make test-fast: unit tests only (no notebooks, no book build).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not book and not native"

## make test-native: ExecuTorch and TVM executed in a fresh process (ExecuTorch 1.5.1 crashed or hung now and then
## on this project's CPUs, so it is not part of make test; see tests/test_deploy.py).
test-native: $(STAMP)
	$(PY) -m pytest -m native

## make book: execute every chapter with $(PROFILE) (cached), then build the HTML.
book: $(STAMP)
	$(VENV)/bin/depthlib book --profile $(PROFILE)

## make html: rebuild the HTML from the stored outputs, executing nothing.
html: $(STAMP)
	$(VENV)/bin/depthlib book --profile $(PROFILE) --no-execute

## make lab: JupyterLab on the chapters, on the project's own kernel ('depthlib', installed into $(VENV)).
lab: $(STAMP)
	$(VENV)/bin/depthlib lab

bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_models.py

clean-book:
	rm -rf book/_build
