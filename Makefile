# make train: set up (once) and train with the defaults; ARGS="..." passes Hydra overrides.
# make test: the whole test suite, as CI runs it (a test file's tests on one worker, so that its
# module fixtures, such as the shared studies, are built once); make quick: the quick loop.
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_CI := -n 2 --dist loadfile --durations=15 --cov --cov-branch --cov-report=term-missing:skip-covered

.PHONY: train test quick

$(VENV)/installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $@

train: $(VENV)/installed
	$(PYTHON) train.py $(ARGS)

test: $(VENV)/installed
	$(PYTHON) -m pytest $(PYTEST_CI)

quick: $(VENV)/installed
	$(PYTHON) -m pytest -m "not slow"
