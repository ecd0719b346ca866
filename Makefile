# The README's commands. People and CI run the same targets.
VENV ?= .venv
BIN := $(VENV)/bin
WRITE_KEY ?= dev-write-key
ADMIN_KEY ?= dev-admin-key
PORT ?= 8000
# Debian packages the tests need: Chromium for the in-app and dashboard browser tests,
# nats-server (JetStream) and PostgreSQL (server binaries) for the distributed mode's tests.
DEBIAN_PACKAGES := chromium nats-server postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo serve test lint bench clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

system:
	@command -v chromium >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1 && \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEBIAN_PACKAGES); }

demo: setup
	$(BIN)/momently demo --host 127.0.0.1 --port $(PORT) --data-dir demo-data --fresh \
		--admin-key $(ADMIN_KEY)

serve: setup
	$(BIN)/momently serve --host 127.0.0.1 --port $(PORT) --data-dir data \
		--write-key $(WRITE_KEY) --admin-key $(ADMIN_KEY)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint system
	$(BIN)/pytest

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) data demo-data .pytest_cache .mypy_cache .ruff_cache .hypothesis
