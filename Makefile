# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test benchmarks clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: venv
	$(BIN)/medsegai demo --output demo_output --overwrite

test: venv
	$(BIN)/ruff check MedSegAI MedSegAILib
	$(BIN)/python -m pytest -q Testing

benchmarks: venv
	$(BIN)/python Testing/benchmarks/run_all.py

clean:
	rm -rf demo_output .pytest_cache
