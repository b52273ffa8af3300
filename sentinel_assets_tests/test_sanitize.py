"""The sanitizer's promise: every record lands in exactly one place, with its reasons."""

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_assets.chaos import inject_faults
from sentinel_assets.contracts import (
    FAULT_KINDS,
    FLEET_SCHEMA,
    QUARANTINE_SCHEMA,
    first_record_id,
)
from sentinel_assets.sanitize import reason_counts, split_fleet
from sentinel_assets.validation import check_contract

NO_FAULTS = dict.fromkeys(FAULT_KINDS, 0.0)
SEVENTH = first_record_id("eu-west") + 7  # the fixture fleet is eu-west's


def test_a_clean_fleet_passes_whole(fleet):
    corrupted, _ = inject_faults(fleet, NO_FAULTS, seed=1)
    sanitized, quarantine = split_fleet(corrupted)
    assert quarantine.height == 0
    assert sanitized.equals(fleet)


def test_outputs_satisfy_their_contracts(corrupted):
    sanitized, quarantine = split_fleet(corrupted[0])
    assert check_contract(sanitized, FLEET_SCHEMA).passed
    assert check_contract(quarantine, QUARANTINE_SCHEMA).passed


def test_quarantine_keeps_original_values_and_partition(corrupted):
    frame, _ = corrupted
    _, quarantine = split_fleet(frame)
    original = frame.filter(pl.col("record_id").is_in(quarantine["record_id"].implode()))
    assert quarantine.drop("reasons").sort("record_id").equals(original.sort("record_id"))
    assert quarantine["partition_key"].unique().to_list() == ["eu-west"]


def _one_broken(fleet: pl.DataFrame, column: str, value: str | None) -> pl.DataFrame:
    frame, _ = inject_faults(fleet.head(50), NO_FAULTS, seed=1)
    return frame.with_columns(
        pl.when(pl.col("record_id") == SEVENTH)
        .then(pl.lit(value, dtype=frame.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("battery_pct", "87%", "battery_pct:not_a_number"),
        ("battery_pct", "", "battery_pct:not_a_number"),
        ("battery_pct", "NaN", "battery_pct:out_of_range"),
        ("battery_pct", None, "battery_pct:missing"),
        ("battery_pct", "250", "battery_pct:out_of_range"),
        ("signal_dbm", "40", "signal_dbm:out_of_range"),
        ("battery_voltage_v", "0", "battery_voltage_v:out_of_range"),
        ("update_status", "SUCCESS", "update_status:not_allowed"),
        ("device_id", "SN_USE_00000007", "device_id:malformed"),
        ("region", "us-east", "region:wrong_partition"),
        ("region", "mars", "region:not_allowed"),
    ],
)
def test_each_broken_rule_is_named(fleet, column, value, reason):
    _, quarantine = split_fleet(_one_broken(fleet, column, value))
    assert quarantine["record_id"].to_list() == [SEVENTH]
    assert reason in quarantine["reasons"][0].to_list()


def test_an_unparsable_reading_is_not_also_reported_missing(fleet):
    _, quarantine = split_fleet(_one_broken(fleet, "temperature_c", "N/A"))
    assert quarantine["reasons"][0].to_list() == ["temperature_c:not_a_number"]


def test_a_record_breaking_several_rules_lists_them_all(fleet):
    frame = _one_broken(fleet, "battery_pct", "250")
    frame = frame.with_columns(
        pl.when(pl.col("record_id") == SEVENTH).then(None).otherwise(pl.col("model")).alias("model")
    )
    _, quarantine = split_fleet(frame)
    assert set(quarantine["reasons"][0]) == {"battery_pct:out_of_range", "model:missing"}


def test_the_later_copy_of_a_device_is_the_duplicate(fleet):
    frame, ledger = inject_faults(fleet.head(100), {"duplicate_row": 0.1}, seed=3)
    sanitized, quarantine = split_fleet(frame)
    assert sorted(quarantine["record_id"]) == sorted(ledger["record_id"])
    assert all(r.to_list() == ["device_id:duplicate"] for r in quarantine["reasons"])
    assert sanitized.height == 100


def test_reason_counts_tally_each_code(corrupted):
    _, quarantine = split_fleet(corrupted[0])
    counts = reason_counts(quarantine)
    assert counts["records"].sum() == quarantine["reasons"].list.len().sum()


def test_a_frame_without_contract_columns_is_a_clear_error(corrupted):
    with pytest.raises(ValueError, match="missing contract columns: signal_dbm"):
        split_fleet(corrupted[0].drop("signal_dbm"))


def test_a_record_in_another_regions_shard_is_quarantined(fleet):
    frame, _ = inject_faults(fleet.head(20), NO_FAULTS, seed=1)
    moved = frame.with_columns(
        pl.when(pl.col("record_id") == SEVENTH)
        .then(pl.lit("us-east"))
        .otherwise(pl.col("partition_key"))
        .alias("partition_key")
    )
    _, quarantine = split_fleet(moved)
    assert quarantine["record_id"].to_list() == [SEVENTH]
    assert "record_id:other_partition" in quarantine["reasons"][0].to_list()


rates_strategy = st.fixed_dictionaries(
    {kind: st.floats(min_value=0.0, max_value=1.0) for kind in FAULT_KINDS}
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rates=rates_strategy, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_every_record_lands_in_exactly_one_place_and_every_fault_is_quarantined(fleet, rates, seed):
    sample = fleet.head(300)
    frame, ledger = inject_faults(sample, rates, seed=seed)
    sanitized, quarantine = split_fleet(frame)

    sanitized_ids = set(sanitized["record_id"])
    quarantined_ids = set(quarantine["record_id"])
    assert sanitized_ids.isdisjoint(quarantined_ids)
    assert sanitized_ids | quarantined_ids == set(frame["record_id"])
    assert sanitized.height + quarantine.height == frame.height
    assert set(ledger["record_id"]) <= quarantined_ids
    # a record nobody touched is never quarantined: the sanitizer has no false positives
    assert quarantined_ids <= set(ledger["record_id"])
    assert check_contract(sanitized, FLEET_SCHEMA).passed
