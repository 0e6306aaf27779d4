# Every target works on a fresh clone: the first one that needs Python builds .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# CI=true also runs the tests marked slow (end-to-end, crash tests).
ifeq ($(CI),true)
PYTEST_MARKERS :=
else
PYTEST_MARKERS := -m "not slow"
endif

.PHONY: demo test lint types contracts pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

## demo: set up and run the main job (a record stored and read back)
demo: $(STAMP)
	$(BIN)/medvault demo

## test: set up, then lint, types, import contracts and the test suite
test: lint types contracts pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_MARKERS)

## bench: the benchmarks with the comparison codecs installed
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.codec
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.transport
	$(BIN)/python -m benchmarks.fuzz
	$(BIN)/python -m benchmarks.http

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache *.egg-info build
