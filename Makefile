# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test lint format lock dagster bench clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## Generate demo data, build and publish every product through Dagster, print tokens, serve :8000.
demo: install
	$(BIN)/civicmesh demo

## Lint and run the whole test suite.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

## Re-resolve the lockfile after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

## The Dagster UI on :3000 over the same instance `civicmesh build` writes to.
dagster: install
	mkdir -p data/dagster && cp -n dagster.yaml data/dagster/dagster.yaml || true
	DAGSTER_HOME=$(CURDIR)/data/dagster exec $(BIN)/dagster dev -m orchestration.definitions -p 3000

bench: install
	for script in bench/[!_]*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf data $(VENV) .pytest_cache .ruff_cache
