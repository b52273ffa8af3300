# Sentinel: every target sets itself up (virtual environment, package, instance folder).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SENTINEL_HOME ?= $(CURDIR)/.sentinel
DAGSTER_HOME ?= $(SENTINEL_HOME)/dagster
export SENTINEL_HOME DAGSTER_HOME

CHROMIUM ?= /usr/bin/chromium

.PHONY: demo stream-demo ui test test-fast check-defs lint format bench bench-100m install instance clean browser
.PHONY: dashboard dashboard-install

# The dashboard's own environment: Streamlit brings pandas, which would slow every pipeline
# worker in .venv (Pandera imports pandas whenever it is installed).
DASHBOARD_VENV := .venv-dashboard
DASHBOARD_STAMP := $(DASHBOARD_VENV)/.installed-stamp
SENTINEL_DASHBOARD_HOST ?= 127.0.0.1
SENTINEL_DASHBOARD_PORT ?= 8501
DASHBOARD_TESTS := sentinel_assets_tests/test_dashboard_app.py sentinel_assets_tests/test_dashboard_browser.py

DEMO_DAYS ?= 2
# Hourly readings (with jitter): the time series shows measured, interpolated and outage slots.
DEMO_READINGS_PER_DAY ?= 24
demo: install instance ## Simulate device telemetry, ingest it, build every region's fleet from it, print the summary
	$(BIN)/sentinel simulate --days $(DEMO_DAYS) --devices-per-region $${SENTINEL_DEVICES_PER_REGION:-10000} --readings-per-day $(DEMO_READINGS_PER_DAY)
	$(BIN)/sentinel ingest $(SENTINEL_HOME)/landing
	SENTINEL_FLEET_SOURCE=landing $(BIN)/sentinel demo
	$(BIN)/sentinel timeseries

stream-demo: install instance servers ## A local Mosquitto, the consumer and the simulator publishing for a minute, ingested by the landing sensor; prints the accounting
	$(BIN)/sentinel stream-demo --seconds $${STREAM_DEMO_SECONDS:-60}

ui: install instance ## Open the project in the Dagster UI (with the daemon, for schedules/sensors)
	$(BIN)/dagster dev -w workspace.yaml

# Two workers, whole files each (module fixtures are built once), the longest files first:
# many tests wait on servers, subprocesses and daemons, so two at a time fit the 10-minute
# budget on 2 cores. The Streamlit tests (their own environment) run alongside, in that idle
# time; their output follows the main suite's, and either failing fails `make test`.
test: install browser check-defs dashboard-install ## The whole test suite: `dg check defs`, every test, and the Streamlit tests in the dashboard env
	@scratch=$$(mktemp -d); \
	$(DASHBOARD_VENV)/bin/pytest $(DASHBOARD_TESTS) --basetemp=$$scratch/tmp >$$scratch/log 2>&1 & \
	dashboard=$$!; \
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder; main=$$?; \
	wait $$dashboard; streamlit=$$?; \
	echo "--- Streamlit tests ($(DASHBOARD_VENV)/bin/pytest $(DASHBOARD_TESTS)) ---"; \
	cat $$scratch/log; rm -rf $$scratch; \
	test $$main = 0 && test $$streamlit = 0

dashboard: dashboard-install ## Operations dashboard on http://127.0.0.1:8501 (read-only on the warehouse)
	$(DASHBOARD_VENV)/bin/streamlit run sentinel_assets/dashboard/app.py \
	  --server.address $(SENTINEL_DASHBOARD_HOST) --server.port $(SENTINEL_DASHBOARD_PORT) \
	  --server.headless true --browser.gatherUsageStats false --client.toolbarMode viewer

dashboard-install: $(DASHBOARD_STAMP)

$(DASHBOARD_STAMP): pyproject.toml
	test -x $(DASHBOARD_VENV)/bin/python || $(PYTHON) -m venv $(DASHBOARD_VENV)
	$(DASHBOARD_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DASHBOARD_VENV)/bin/python -m pip install --quiet -e '.[dev,dashboard]'
	touch $@

test-fast: install ## Unit and property tests only (no Dagster runs or servers), on 2 cores, under 30 s
	$(BIN)/pytest -m "not slow" -n 2 --dist worksteal

# dg looks for the project's .venv and warns unless it is the active environment.
check-defs: install instance ## Every definition under sentinel_assets/defs loads (Dagster's `dg check defs`)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg check defs

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

BENCH_STAMP := $(VENV)/.bench-stamp

bench: $(BENCH_STAMP) $(SEED_VENV)/.installed-stamp ## Benchmarks (not part of `make test`), results in benchmarks/README.md
	$(BIN)/python -m benchmarks.run --seed-python $(SEED_VENV)/bin/python

bench-100m: $(BENCH_STAMP) ## 100M devices through the whole pipeline against 10M in the same sitting (~12 min, ~10 GB disk)
	$(BIN)/python -m benchmarks.hundred_million

# The bench extra on top of the dev install (dagster-duckdb-polars, for storage_designs.py).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

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
	rm -rf $(VENV) $(SEED_VENV) $(DASHBOARD_VENV) $(SENTINEL_HOME) .pytest_cache .ruff_cache .hypothesis

# --- Production profile (deploy/production/, README "Production profile") -------------------
.PHONY: servers production-instance
PG_BIN ?= /usr/lib/postgresql/15/bin
REDIS_SERVER ?= /usr/bin/redis-server
MOSQUITTO ?= /usr/sbin/mosquitto
SERVER_PACKAGES := postgresql-15 redis-server mosquitto mosquitto-clients

# The production-profile tests start their own throwaway servers from these binaries.
test: servers

servers: ## Debian's PostgreSQL 15, Redis and Mosquitto for the production-profile and stream tests (installed when root)
	@{ test -x $(PG_BIN)/initdb && test -x $(REDIS_SERVER) && test -x $(MOSQUITTO) && test -x /usr/bin/mosquitto_sub; } \
	  || { test "$$(id -u)" = 0 && apt-get update -qq \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); } \
	  || { sudo -n true 2>/dev/null && sudo apt-get update -qq \
	       && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVER_PACKAGES); } \
	  || echo "make servers: cannot install $(SERVER_PACKAGES) here (needs root or sudo): the production-profile and broker tests that need them will be skipped"

production-instance: install ## Dagster instance on PostgreSQL: checks the SENTINEL_PG_* variables, copies deploy/production/dagster.yaml
	$(BIN)/python -m sentinel_assets.production check
	mkdir -p $(DAGSTER_HOME)
	cp deploy/production/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# --- Reliability suite (README "Reliability") ------------------------------------------------
.PHONY: reliability
# Every scenario at full size, then the table; `make test` runs the same tests at reduced size.
reliability: install instance servers ## Kill, lock, break, fill and flood the pipeline; print the table (records lost must be 0)
	SENTINEL_RELIABILITY_SIZE=full SENTINEL_RELIABILITY_REPORT=$(CURDIR)/reliability-table.md \
	  $(BIN)/pytest -n 2 --dist loadfile sentinel_assets_tests/reliability
