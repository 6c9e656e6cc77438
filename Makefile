# Two commands on a fresh machine: `make book` and `make test`.
# Both create the virtual environment from the project's own pinned files when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= quick

.PHONY: install test test-fast book html bench clean-book

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements-lock.txt -e '.[book,dev,deploy]'
	touch $(STAMP)

install: $(STAMP)

## make test: the whole test suite, notebooks under the smoke profile and the book build included.
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest

## make test-fast: unit tests only (no notebooks, no book build).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not book"

## make book: execute every chapter with $(PROFILE) (cached), then build the HTML.
book: $(STAMP)
	$(VENV)/bin/depthlib book --profile $(PROFILE)

## make html: rebuild the HTML from the stored outputs, executing nothing.
html: $(STAMP)
	$(VENV)/bin/depthlib book --profile $(PROFILE) --no-execute

bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_models.py

clean-book:
	rm -rf book/_build
