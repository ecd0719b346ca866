# The README's commands. People and CI run the same targets.
VENV ?= .venv
BIN := $(VENV)/bin
WRITE_KEY ?= dev-write-key
ADMIN_KEY ?= dev-admin-key
PORT ?= 8000

.PHONY: setup serve test lint bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

serve: setup
	$(BIN)/momently serve --host 127.0.0.1 --port $(PORT) --data-dir data \
		--write-key $(WRITE_KEY) --admin-key $(ADMIN_KEY)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
