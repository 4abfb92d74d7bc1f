# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat uv.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
DAGSTER_PORT ?= 3000
# GraphiQL's files (demo mode) from the npm registry at install time, never at run time; see
# graphql/gateway/README.md. Re-installed only when the lock changes; skipped (with a warning) without npm.
IDE       := graphql/gateway/ide
IDE_STAMP := $(IDE)/node_modules/.installed-$(shell cksum < $(IDE)/package-lock.json | cut -d' ' -f1)
# The portal's front-end files (Vega, Vega-Lite, vega-embed, axe-core), the same way; see
# graphql/portal/assets.py. Without npm the portal works, minus charts and maps.
PORTAL_STATIC := graphql/portal/static
PORTAL_STAMP  := $(PORTAL_STATIC)/node_modules/.installed-$(shell cksum < $(PORTAL_STATIC)/package-lock.json | cut -d' ' -f1)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
# The suite runs on this many processes (pytest-xdist, one test file per process at a time).
PYTEST_WORKERS ?= 2

.PHONY: install compile system-packages demo test lint format lock dagster bench clean

# uv.lock pins every package with its hashes; --frozen installs exactly that, or fails.
$(STAMP): uv.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv sync --quiet --frozen --extra dev --compile-bytecode --python $(BIN)/python
	@rm -f $(VENV)/.installed-* && touch $@

# Bytecode compiled once at install: a process that may not write it (PYTHONDONTWRITEBYTECODE, a
# read-only tree) compiled every module at each start, two thirds of a cold start (bench/cold_start.py).
# The project's own modules are compiled on every install; a changed file is recompiled when imported.
# Every package of the repository (a folder with an __init__.py): a list by name had left the leaf
# core (meshcore) out, compiled at every start of `civicmesh serve` (30-55 ms measured).
PACKAGES := $(dir $(wildcard */__init__.py graphql/*/__init__.py))
compile: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 $(PACKAGES) >/dev/null

$(IDE_STAMP): $(IDE)/package.json $(IDE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(IDE) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $(CURDIR)/$@; \
	else echo "warning: npm not found: GraphiQL (demo mode) will say how to install it; the API works"; fi

$(PORTAL_STAMP): $(PORTAL_STATIC)/package.json $(PORTAL_STATIC)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(PORTAL_STATIC) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $(CURDIR)/$@; \
	else echo "warning: npm not found: the portal's charts and maps will say how to install their files"; fi

install: $(STAMP) $(IDE_STAMP) $(PORTAL_STAMP) compile

## Debian's Chromium and PostgreSQL server, which the tests run for real (installed when missing).
system-packages:
	@scripts/system-packages.sh

## Generate demo data, build and publish every product through Dagster, print tokens, serve :8000.
demo: install
	$(BIN)/civicmesh demo

## Lint, check the import layers (pyproject [tool.importlinter]) and the types (mypy), run the suite.
test: install system-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Re-resolve uv.lock after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/uv lock

## The Dagster UI on :$(DAGSTER_PORT) over the instance `civicmesh build` writes to (DAGSTER_HOME from
## CIVICMESH_HOME, resolved as the build does); exec all the way, so a SIGTERM stops `dagster dev`.
dagster: install
	exec $(BIN)/python -m orchestration.dev --port $(DAGSTER_PORT)

bench: install
	for script in bench/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf data $(VENV) .pytest_cache .ruff_cache .import_linter_cache .grimp_cache .mypy_cache
