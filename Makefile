# The two commands that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench bench-all lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m encodec_train

# Tests run in TEST_WORKERS processes (pytest-xdist; each test uses one thread, tests/conftest.py),
# handed out as workers free up so the few long training runs do not queue behind each other.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

# Also the tests marked slow (the installed wheel, longer end-to-end runs).
test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow" -n $(TEST_WORKERS) --dist worksteal

# Our training step beside audiocraft's own, CPU (docs/speed.md). audiocraft is no dependency:
# the `bench` extra holds what its training code imports, and its own pins are skipped.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m pip install --quiet --no-deps audiocraft==1.3.0
	$(PY) benchmarks/training_step.py

# Every benchmark script (audiocraft_reference.py is the comparison's helper module).
bench-all: bench
	for b in benchmarks/*.py; do [ $$b = benchmarks/audiocraft_reference.py ] || [ $$b = benchmarks/training_step.py ] || $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check encodec_train tests benchmarks recipes
	$(VENV)/bin/ruff format --check encodec_train tests benchmarks recipes

clean:
	rm -rf $(VENV) outputs runs wandb lightning_logs
