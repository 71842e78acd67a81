# One entry point for the project's chores. `make test` is what CI runs (via .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install proto verify lint types layers pytest test bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)  ## the package with its test tools and the embedded extra (moto), editable
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip check

proto:  ## regenerate provisioner/csi/_proto from proto/csi.proto
	$(PY) tools/genproto.py

lint:
	$(BIN)/ruff check provisioner tests tools benchmarks
	$(BIN)/ruff format --check provisioner tests tools benchmarks

types:
	$(BIN)/mypy

layers:
	$(BIN)/lint-imports

verify: lint types layers  ## static checks: ruff, mypy --strict, import-linter

pytest:
	$(PY) -m pytest

test: verify pytest  ## everything CI checks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
