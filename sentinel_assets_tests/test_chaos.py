import polars as pl
import pytest

from sentinel_assets.chaos import (
    DEFAULT_RATES,
    OUT_OF_BOUNDS_VALUES,
    TYPE_MISMATCH_VALUES,
    UNKNOWN_STATUS_LABELS,
    ChaosPlan,
    inject_faults,
)
from sentinel_assets.contracts import (
    BOUNDS,
    CHAOS_LEDGER_SCHEMA,
    CORRUPTED_FLEET_SCHEMA,
    FAULT_KINDS,
    FLEET_DTYPES,
    UPDATE_STATUSES,
)
from sentinel_assets.validation import check_contract

NO_FAULTS = dict.fromkeys(FAULT_KINDS, 0.0)


def test_zero_rates_inject_nothing(fleet):
    corrupted, ledger = inject_faults(fleet, NO_FAULTS, seed=1)
    assert ledger.height == 0
    assert corrupted.height == fleet.height
    assert corrupted["battery_pct"].dtype == pl.String  # readings travel as text


def test_outputs_satisfy_their_contracts(corrupted):
    frame, ledger = corrupted
    assert check_contract(frame, CORRUPTED_FLEET_SCHEMA).passed
    assert check_contract(ledger, CHAOS_LEDGER_SCHEMA).passed


def test_every_fault_kind_is_injected_near_its_rate(fleet, corrupted):
    _, ledger = corrupted
    per_kind = dict(ledger.group_by("fault_kind").len().iter_rows())
    assert set(per_kind) == set(FAULT_KINDS)
    for kind in FAULT_KINDS:
        assert 0.03 * fleet.height < per_kind[kind] < 0.07 * fleet.height, kind


def test_duplicates_are_new_records_of_an_existing_device(fleet, corrupted):
    frame, ledger = corrupted
    copies = ledger.filter(pl.col("fault_kind") == "duplicate_row")
    assert frame.height == fleet.height + copies.height
    assert copies["record_id"].min() >= fleet.height  # fresh, stable ids
    assert frame["record_id"].n_unique() == frame.height


def test_the_ledger_matches_the_values_in_the_frame(corrupted):
    frame, ledger = corrupted
    nulls = ledger.filter(pl.col("fault_kind") == "null")
    # the last fault written to a cell wins; "null" is applied last of the cell faults
    for row in nulls.head(20).iter_rows(named=True):
        value = frame.filter(pl.col("record_id") == row["record_id"])[row["column"]][0]
        assert value is None


def test_injected_values_break_the_contract():
    for column, values in OUT_OF_BOUNDS_VALUES.items():
        bounds = BOUNDS[column]
        for value in values:
            assert not bounds.low <= float(value) <= bounds.high, (column, value)
    for value in TYPE_MISMATCH_VALUES:
        assert pl.Series([value]).cast(pl.Float64, strict=False)[0] is None
    assert not set(UNKNOWN_STATUS_LABELS) & set(UPDATE_STATUSES)


def test_injection_is_deterministic_for_a_seed(fleet):
    first = inject_faults(fleet, DEFAULT_RATES, seed=[7, 1])
    again = inject_faults(fleet, DEFAULT_RATES, seed=[7, 1])
    assert first[0].equals(again[0]) and first[1].equals(again[1])


def test_rate_one_hits_every_record(fleet):
    _, ledger = inject_faults(fleet.head(200), {"type_mismatch": 1.0}, seed=1)
    assert ledger.height == 200


def test_strict_dtypes_survive_the_text_round_trip(fleet):
    frame, _ = inject_faults(fleet, NO_FAULTS, seed=1)
    restored = frame.with_columns(
        pl.col(c).cast(FLEET_DTYPES[c]) for c in ["battery_pct", "battery_voltage_v"]
    )
    assert restored["battery_pct"].equals(fleet["battery_pct"])
    assert restored["battery_voltage_v"].equals(fleet["battery_voltage_v"])


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"null": -0.1}, "rates.null\n  Input should be greater than or equal to 0"),
        ({"null": 1.5}, "rates.null\n  Input should be less than or equal to 1"),
        ({"gremlins": 0.1}, "unknown fault kind"),
    ],
)
def test_invalid_rates_are_rejected_before_anything_is_written(rates, message):
    with pytest.raises(ValueError, match=message):
        ChaosPlan(rates=rates)


def test_kinds_left_out_of_the_rates_are_off(fleet):
    _, ledger = inject_faults(fleet, {"null": 0.05}, seed=1)
    assert set(ledger["fault_kind"]) == {"null"}


def test_identity_is_never_corrupted_and_the_ledger_names_each_records_shard(corrupted, fleet):
    frame, ledger = corrupted
    assert set(ledger["column"]).isdisjoint({"record_id", "partition_key"})
    assert frame["partition_key"].null_count() == 0
    assert set(frame["partition_key"]) == set(ledger["partition_key"]) == {"eu-west"}
    joined = ledger.join(frame.select("record_id", "partition_key"), on="record_id")
    assert joined.height == ledger.height
    assert (joined["partition_key"] == joined["partition_key_right"]).all()
