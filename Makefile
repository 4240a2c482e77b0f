# Two commands do the whole set-up from a bare Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test soak lint bench clean constraints

# Installs are pinned: every package at the version in constraints.txt (what the tests pass with).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/churnwatch demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy detectors
	$(BIN)/pytest -m "not fault"

# Faults at load on the embedded broker for SOAK_MINUTES, checked against replay; prints a
# table of the run (tests/fault/test_soak.py). SOAK_RATE events/s, SOAK_SEED picks the faults.
SOAK_MINUTES ?= 30
SOAK_RATE    ?= 200
SOAK_SEED    ?= 1
soak: $(STAMP)
	CHURNWATCH_SOAK_MINUTES=$(SOAK_MINUTES) CHURNWATCH_SOAK_RATE=$(SOAK_RATE) \
	CHURNWATCH_SOAK_SEED=$(SOAK_SEED) $(BIN)/pytest -m fault -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache

# Rewrites constraints.txt (keeping its header) with the newest versions that pyproject.toml
# allows for .[dev,bench], resolved in a scratch venv; then `make clean test`, and commit it.
LOCK_VENV := build/constraints-venv
constraints:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q -e '.[dev,bench]'
	{ grep '^#' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable; } \
		> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
