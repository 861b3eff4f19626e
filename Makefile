# The two commands of the README: `make demo` and `make test`.
#   make demo               core install (no extras), renders the examples into out/
#   make demo ARGS=--fresh  start the demo over (it says what exists when run again)
#   make test               the dev extra, then the whole test suite
#   make lint               ruff, mypy, import-linter, the docs site (mkdocs build --strict)
#   make docs               serve the documentation site on http://127.0.0.1:8000
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed-dev
ARGS ?=

.PHONY: demo test lint docs docs-build typecheck bench install system-deps clean

# WeasyPrint subsets fonts with HarfBuzz (libharfbuzz-subset0); without it every PDF takes
# about three times as long. Installed where apt-get exists and we are root; else `ccm doctor`
# says what is missing.
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	    && ! ldconfig -p 2>/dev/null | grep -q libharfbuzz-subset; then \
	  echo "installing libharfbuzz-subset0 (WeasyPrint's font subsetter)"; \
	  apt-get install -y -qq libharfbuzz-subset0 >/dev/null 2>&1 \
	    || { apt-get update -qq && apt-get install -y -qq libharfbuzz-subset0 >/dev/null; }; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(CORE): pyproject.toml | $(VENV)/bin/python
	$(MAKE) --no-print-directory system-deps
	$(BIN)/pip install --quiet -e .
	touch $(CORE)

$(DEV): pyproject.toml | $(VENV)/bin/python
	$(MAKE) --no-print-directory system-deps
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV) $(CORE)

install: $(DEV)

demo: $(CORE)
	$(BIN)/python examples/demo.py --out out $(ARGS)

test: $(DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(DEV) docs-build
	$(BIN)/ruff check ccm tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

docs-build: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(DEV)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf out site .venv ccm-record.db
