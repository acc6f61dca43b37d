# The README's set-up commands. Each target installs what it needs into .venv first (once).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 3000

.PHONY: setup engines demo test dev bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The database engines the tests start on loopback (Postgres), installed when missing.
engines:
	bash scripts/install-engines.sh

demo: setup
	$(BIN)/mureka-etl demo

test: setup engines
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

dev: setup
	$(BIN)/mureka-etl dev --port $(PORT)

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo .pytest_cache
