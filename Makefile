# Sentinel: every target sets itself up (virtual environment, package, instance folder).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SENTINEL_HOME ?= $(CURDIR)/.sentinel
DAGSTER_HOME ?= $(SENTINEL_HOME)/dagster
export SENTINEL_HOME DAGSTER_HOME

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo ui test lint format bench install instance clean browser

demo: install instance ## Materialize every region headless and print the summary
	$(BIN)/sentinel demo

ui: install instance ## Open the project in the Dagster UI (with the daemon, for schedules/sensors)
	$(BIN)/dagster dev -w workspace.yaml

test: install browser ## The whole test suite
	$(BIN)/pytest

browser: ## Debian's Chromium for the browser UI test (Playwright from the dev extra drives it)
	@test -x $(CHROMIUM) \
	  || { test "$$(id -u)" = 0 && apt-get update -qq \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || { sudo -n true 2>/dev/null && sudo apt-get update -qq \
	       && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "make browser: cannot install chromium here (needs root or sudo): the browser test will be skipped"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

SEED_VENV := .venv-seed

bench: install $(SEED_VENV)/.installed-stamp ## Benchmarks (not part of `make test`), results in benchmarks/README.md
	$(BIN)/python -m benchmarks.run --seed-python $(SEED_VENV)/bin/python

# The seed-style baseline needs pandas; it gets its own environment so the pipeline is measured
# as users install it (Pandera imports pandas whenever it is installed).
$(SEED_VENV)/.installed-stamp:
	test -x $(SEED_VENV)/bin/python || $(PYTHON) -m venv $(SEED_VENV)
	$(SEED_VENV)/bin/python -m pip install --quiet 'pandas>=2.1' numpy
	touch $@

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

instance: ## Dagster instance folder inside the data folder, with this repo's dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

clean:
	rm -rf $(VENV) $(SEED_VENV) $(SENTINEL_HOME) .pytest_cache .ruff_cache .hypothesis

# --- Production profile (deploy/production/, README "Production profile") -------------------
.PHONY: servers production-instance
PG_BIN ?= /usr/lib/postgresql/15/bin
REDIS_SERVER ?= /usr/bin/redis-server
SERVER_PACKAGES := postgresql-15 redis-server

# The production-profile tests start their own throwaway servers from these binaries.
test: servers

servers: ## Debian's PostgreSQL 15 and Redis for the production-profile tests (installed when root)
	@{ test -x $(PG_BIN)/initdb && test -x $(REDIS_SERVER); } \
	  || { test "$$(id -u)" = 0 && apt-get update -qq \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); } \
	  || { sudo -n true 2>/dev/null && sudo apt-get update -qq \
	       && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); } \
	  || echo "make servers: cannot install $(SERVER_PACKAGES) here (needs root or sudo): the production-profile tests that need them will be skipped"

production-instance: install ## Dagster instance on PostgreSQL: checks the SENTINEL_PG_* variables, copies deploy/production/dagster.yaml
	$(BIN)/python -m sentinel_assets.production check
	mkdir -p $(DAGSTER_HOME)
	cp deploy/production/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
