# A local virtual environment with everything needed, then the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= reports

.PHONY: test verify verify-quick thorough bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest

thorough: $(BIN)/.installed
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -m "not gpu"

verify: $(BIN)/.installed
	$(BIN)/fdcheck verify --out $(OUT)

verify-quick: $(BIN)/.installed
	$(BIN)/fdcheck verify --quick --out $(OUT)/quick

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_step.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
