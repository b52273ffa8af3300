"""The contracts module is the one source of truth: these tests pin what it promises."""

import polars as pl
import pytest

from sentinel_assets import contracts
from sentinel_assets.contracts import (
    ASSET_CONTRACTS,
    FLEET_SCHEMA,
    REQUIRED_COLUMNS,
    TEXT_ENCODED_COLUMNS,
)
from sentinel_assets.generate import generate_fleet
from sentinel_assets.validation import check_contract, row_rules
from sentinel_assets_tests.conftest import AS_OF


def test_a_generated_fleet_satisfies_the_fleet_contract(fleet):
    report = check_contract(fleet, FLEET_SCHEMA)
    assert report.passed, report.failure_cases
    assert report.failing_rows == 0


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("battery_pct", 250.0, "in_range"),
        ("battery_voltage_v", 0.0, "in_range"),
        ("signal_dbm", 40, "in_range"),
        ("update_status", "in_progress", "isin"),
        ("device_id", "sn-use-00000001", "str_matches"),
    ],
)
def test_the_contract_rejects_a_broken_value(fleet, column, value, check):
    broken = fleet.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(value, dtype=fleet.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )
    report = check_contract(broken, FLEET_SCHEMA)
    assert not report.passed
    assert report.failing_rows == 1
    assert report.failure_cases.filter(pl.col("column") == column)["check"][0].startswith(check)


def test_the_contract_rejects_a_failed_update_without_failure_kind(fleet):
    failed = fleet.filter(pl.col("update_status") == "failed")["record_id"][0]
    broken = fleet.with_columns(
        pl.when(pl.col("record_id") == failed)
        .then(None)
        .otherwise(pl.col("failure_kind"))
        .alias("failure_kind")
    )
    assert not check_contract(broken, FLEET_SCHEMA).passed


def test_a_missing_column_fails_every_row(fleet):
    report = check_contract(fleet.drop("signal_dbm"), FLEET_SCHEMA)
    assert not report.passed
    assert report.failing_rows == fleet.height


def test_numeric_readings_are_the_text_encoded_columns():
    assert set(TEXT_ENCODED_COLUMNS) == {
        "battery_pct",
        "battery_voltage_v",
        "signal_dbm",
        "temperature_c",
        "retry_count",
        "boot_attempts",
    }
    assert "failure_kind" not in REQUIRED_COLUMNS
    assert "record_id" not in REQUIRED_COLUMNS
    assert "partition_key" not in REQUIRED_COLUMNS  # identity: chaos never blanks it


def test_every_contract_check_has_a_row_level_rule():
    codes = {rule.code for rule in row_rules()}
    for name, column in FLEET_SCHEMA.columns.items():
        if not column.nullable:
            assert f"{name}:missing" in codes
        if column.unique:
            assert f"{name}:duplicate" in codes
    assert "failure_kind:set_iff_failed" in codes


def test_row_rules_find_exactly_the_broken_rows(fleet):
    broken = fleet.with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit(-131))
        .otherwise(pl.col("signal_dbm"))
        .alias("signal_dbm")
    )
    flags = broken.select(rule.violated.alias(rule.code) for rule in row_rules())
    hits = flags.select(pl.any_horizontal(pl.all())).to_series()
    assert hits.sum() == 1
    assert flags["signal_dbm:out_of_range"][5]


def test_an_unsupported_check_fails_loudly():
    import pandera.polars as pa

    schema = pa.DataFrameSchema({"x": pa.Column(pl.Int64, pa.Check.le(5))})
    with pytest.raises(NotImplementedError, match="less_than_or_equal_to"):
        row_rules(schema)


def test_unknown_regions_are_rejected_by_name():
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        contracts.validate_region("mars")


def test_every_asset_of_the_graph_has_a_contract():
    assert set(ASSET_CONTRACTS) >= {
        "raw_fleet",
        "corrupted_fleet",
        "chaos_ledger",
        "sanitized_fleet",
        "quarantine",
        "recovery_decisions",
        "regional_rank",
    }


def test_record_ids_are_unique_across_regions_and_name_their_region():
    east = generate_fleet("us-east", 50, seed=7, as_of=AS_OF)
    west = generate_fleet("eu-west", 50, seed=7, as_of=AS_OF)
    both = pl.concat([east, west])
    assert both["record_id"].n_unique() == both.height
    assert set(both.select(contracts.record_region_number())["record_id"]) == {0, 3}
    assert (both["partition_key"] == both["region"]).all()


def test_a_record_id_outside_its_partition_breaks_the_contract(fleet):
    moved = fleet.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("us-east"))
        .otherwise(pl.col("partition_key"))
        .alias("partition_key")
    )
    report = check_contract(moved, FLEET_SCHEMA)
    assert not report.passed
    assert "record_in_its_partition" in set(report.failure_cases["check"])


def test_every_region_has_a_unique_number_and_code():
    numbers = [r.number for r in contracts.REGION_TABLE]
    codes = [r.code for r in contracts.REGION_TABLE]
    assert len(set(numbers)) == len(numbers) and len(set(codes)) == len(codes)
    assert all(0 <= n < 2**63 // contracts.RECORD_ID_STRIDE for n in numbers)
