# make train: set up (once) and train with the defaults; ARGS="..." passes Hydra overrides.
# make test: the whole test suite, as CI runs it: the newcomer check (scripts/newcomer.py: make train
# in a fresh clone) beside the checks, which install what they need (the virtual environment, the
# Debian packages the tests use: make system), then lint and run the tests.
# make quick: the quick loop, the tests that neither start processes nor train for real.
VENV := .venv
PYTHON := $(VENV)/bin/python
# A test file's tests on one worker, so that its module fixtures (the shared studies) are built once;
# the longest files first (tests/conftest.py orders them), not xdist's order by number of tests.
BY_FILE := --dist loadfile --no-loadscope-reorder
# make test: a worker more than this 2-core machine has cores, as its tests wait on the processes
# they start; the quick loop's tests start none.
PYTEST_CI := -n 3 $(BY_FILE) --durations=15 --cov --cov-branch --cov-report=term-missing:skip-covered
# MNIST: $MNIST_DATA_DIR, else the shared copy beside this checkout, else data/ (downloaded there).
SHARED_DATA := $(abspath ../shared/data)
export MNIST_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/MNIST/raw),$(SHARED_DATA),$(CURDIR)/data)

.PHONY: train test newcomer checks quick system

$(VENV)/installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $@

system:
	scripts/system_packages.sh

train: $(VENV)/installed
	$(PYTHON) train.py $(ARGS)

# Side by side, as making the venv keeps one core busy and the newcomer's clone fills the other; both
# are run to the end and either failing fails make test.
test:
	$(MAKE) --jobs=2 --keep-going newcomer checks

newcomer:
	python3 scripts/newcomer.py

checks: $(VENV)/installed system
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTHON) -m pytest $(PYTEST_CI)
	$(PYTHON) scripts/coverage_floor.py

quick: $(VENV)/installed
	$(PYTHON) -m pytest -m "not slow" -n 2 $(BY_FILE)
