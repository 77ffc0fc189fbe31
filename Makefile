# The two commands a newcomer needs: `make run` and `make test`. Both create the virtual
# environment and install what is missing first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: setup run test lint typecheck pytest browser-deps accuracy benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,profile]'
	touch $(STAMP)

setup: $(STAMP)

## The service: API + dashboard on 127.0.0.1:8000 and its job runner process, embedded SQLite,
## local Ray.
run: setup
	$(BIN)/paretune serve --host 127.0.0.1 --port 8000

browser-deps:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy search_spaces cost_models results tuner api

pytest: setup browser-deps
	PARETUNE_TEST_PG_URL=$${PARETUNE_TEST_PG_URL:-$(PG_URL)} $(BIN)/pytest -q -rs

## Score the training model on ../shared/reference and regenerate docs/accuracy.md (~1 min).
accuracy: setup
	$(BIN)/python -m cost_models.accuracy.report

## Load, search-efficiency and tuner-overhead figures; regenerates docs/benchmarks.md (~15 min).
benchmarks: setup
	$(BIN)/python -m benchmarks.report

## Lint, type-check and the whole suite (slow, PostgreSQL, Ray and browser cases included).
test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
