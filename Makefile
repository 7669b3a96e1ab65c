# EventDesk: `make run` sets up and launches the app; `make test` sets up and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup setup-test peers lint bench screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

peers: tests/peers/node_modules/.package-lock.json

tests/peers/node_modules/.package-lock.json: tests/peers/package-lock.json
	cd tests/peers && npm ci --no-audit --no-fund --loglevel=error

run: setup
	$(BIN)/eventdesk

lint: setup
	$(BIN)/ruff check eventdesk tests
	$(BIN)/ruff format --check eventdesk tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup peers lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: setup peers
	$(BIN)/python -m tests.bench.pipeline

clean:
	rm -rf $(VENV) tests/peers/node_modules
