# Sentinel: every target sets itself up (virtual environment, package, instance folder).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SENTINEL_HOME ?= $(CURDIR)/.sentinel
DAGSTER_HOME ?= $(SENTINEL_HOME)/dagster
export SENTINEL_HOME DAGSTER_HOME

.PHONY: demo ui test lint format bench install instance clean

demo: install instance ## Materialize every region headless and print the summary
	$(BIN)/sentinel demo

ui: install instance ## Open the project in the Dagster UI (with the daemon, for schedules/sensors)
	$(BIN)/dagster dev -w workspace.yaml

test: install ## The whole test suite
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## Benchmarks (not part of `make test`)
	$(BIN)/python -m benchmarks.run

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
	rm -rf $(VENV) $(SENTINEL_HOME) .pytest_cache .ruff_cache .hypothesis
