"""The definitions as Dagster loads them, and what the catalog shows of each asset's columns."""

import dagster as dg
import pandera.polars as pa
import polars as pl
import pytest

from sentinel_assets.contracts import ASSET_CONTRACTS, BOUNDS, CROSS_FIELD_RULES, FLEET_COLUMNS
from sentinel_assets.definitions import defs, run_defs
from sentinel_assets.defs.metadata import COLUMN_SCHEMA, column_schema, contract_metadata


def asset_metadata(definitions: dg.Definitions) -> dict[str, dict]:
    """Every asset Sentinel materializes (the MQTT stream is external: observed, and its
    payloads meet the telemetry contract when they are ingested)."""
    graph = definitions.resolve_asset_graph()
    return {
        key.to_user_string(): graph.get(key).metadata
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }


def test_the_only_external_asset_is_the_stream(definitions: dg.Definitions):
    graph = definitions.resolve_asset_graph()
    external = {k.to_user_string() for k in graph.get_all_asset_keys()} - set(
        asset_metadata(definitions)
    )
    assert external == {"mqtt_telemetry_stream"}


def test_the_definitions_load_once_per_process_and_are_loadable(definitions: dg.Definitions):
    assert defs() is definitions  # cached: a worker running many jobs loads them once
    dg.Definitions.validate_loadable(definitions)
    assert {job.name for job in definitions.jobs} >= {"fleet_refresh", "regional_report"}


def test_sentinels_runs_get_the_same_definitions_without_the_ui_component_catalog(
    definitions: dg.Definitions,
):
    runs = run_defs()
    assert run_defs() is runs  # cached like `defs()`
    graph, run_graph = definitions.resolve_asset_graph(), runs.resolve_asset_graph()
    assert run_graph.get_all_asset_keys() == graph.get_all_asset_keys()
    assert run_graph.asset_check_keys == graph.asset_check_keys
    for attribute in ("jobs", "schedules", "sensors"):
        names = {d.name for d in getattr(definitions, attribute)}
        assert {d.name for d in getattr(runs, attribute)} == names, attribute
    assert set(runs.resources) == set(definitions.resources)
    assert set(definitions.metadata) - set(runs.metadata or {}) == {"plugin_component_types_json"}
    job, run_job = (d.resolve_job_def("fleet_and_reports") for d in (definitions, runs))
    assert set(run_job.graph.node_names()) == set(job.graph.node_names())


def test_loading_the_run_definitions_prints_no_dagster_notices_as_the_ui_loading_does_not():
    import subprocess
    import sys

    for loader in ("defs", "run_defs"):
        code = f"from sentinel_assets.definitions import {loader}; {loader}()"
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,  # a user's filters
        )
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, (loader, done.stderr[:500])


def test_every_asset_has_a_contract_and_every_contract_an_asset(definitions: dg.Definitions):
    assert set(asset_metadata(definitions)) == set(ASSET_CONTRACTS)


def test_every_asset_shows_its_contract_columns_in_the_catalog(definitions: dg.Definitions):
    for asset, metadata in asset_metadata(definitions).items():
        schema = metadata[COLUMN_SCHEMA]
        assert isinstance(schema, dg.TableSchema), asset
        contract = ASSET_CONTRACTS[asset]
        shown = [(c.name, c.type, c.description) for c in schema.columns]
        expected = [
            (name, str(column.dtype), column.description)
            for name, column in contract.columns.items()
        ]
        assert shown == expected, asset


def test_every_column_of_every_contract_is_described():
    undescribed = [
        f"{asset}.{name}"
        for asset, contract in ASSET_CONTRACTS.items()
        for name, column in contract.columns.items()
        if not (column.description or "").strip()
    ]
    assert undescribed == []


def fleet_columns() -> dict[str, dg.TableColumn]:
    return {c.name: c for c in column_schema(ASSET_CONTRACTS["raw_fleet"]).columns}


def test_the_fleet_schema_lists_the_fleet_columns_in_order():
    assert tuple(fleet_columns()) == FLEET_COLUMNS


def test_column_constraints_come_from_the_contract():
    columns = fleet_columns()
    assert columns["record_id"].constraints.unique
    assert not columns["record_id"].constraints.nullable
    assert columns["failure_kind"].constraints.nullable
    assert not columns["battery_pct"].constraints.nullable
    for reading, bounds in BOUNDS.items():
        rule = f"in_range({bounds.low}, {bounds.high})"
        assert columns[reading].constraints.other == [rule], reading


def test_a_column_without_checks_has_no_other_constraints():
    assert fleet_columns()["site"].constraints.other == []
    assert fleet_columns()["last_seen_at"].constraints.other == []


def test_the_fleet_cross_field_rules_are_table_constraints():
    rules = column_schema(ASSET_CONTRACTS["raw_fleet"]).constraints.other
    assert {rule.split(":")[0] for rule in rules} == set(CROSS_FIELD_RULES)
    assert all(rule.split(": ", 1)[1] for rule in rules)  # each with its docstring


def test_any_pandera_schema_maps_column_by_column():
    contract = pa.DataFrameSchema(
        {
            "id": pa.Column(pl.Int64, pa.Check.ge(1), unique=True, description="Key."),
            "note": pa.Column(pl.String, nullable=True),
            "tags": pa.Column(pl.List(pl.String), pa.Check(lambda data: data.lazyframe)),
        }
    )
    schema = column_schema(contract)
    assert schema.columns == [
        dg.TableColumn(
            "id",
            "Int64",
            "Key.",
            dg.TableColumnConstraints(
                nullable=False, unique=True, other=["greater_than_or_equal_to(1)"]
            ),
        ),
        dg.TableColumn("note", "String", None, dg.TableColumnConstraints(nullable=True)),
        # An anonymous check has nothing readable to show.
        dg.TableColumn("tags", "List(String)", None, dg.TableColumnConstraints(nullable=False)),
    ]
    assert schema.constraints.other == []


def test_an_asset_named_without_a_contract_fails_the_definitions_loading():
    with pytest.raises(KeyError):
        contract_metadata("no_such_asset")
