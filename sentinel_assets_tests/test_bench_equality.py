"""The benchmark's frame-for-frame comparison (`benchmarks.equality`) finds every kind of
difference, so an "equal" verdict means something."""

import polars as pl

from benchmarks.equality import differences

A = pl.DataFrame({"record_id": [1, 2], "battery_pct": [50.0, 60.0]})


def test_equal_tables_have_no_difference():
    assert differences({"t": A}, {"t": A.clone()}, "table") == []


def test_a_changed_value_a_reordered_row_and_a_missing_table_are_all_found():
    changed = A.with_columns(pl.col("battery_pct") + 0.5)
    found = differences(
        {"v": A, "o": A, "only_a": A}, {"v": changed, "o": A.reverse(), "only_b": A}, "table"
    )
    assert found == [
        "table only_a: only in one-run",
        "table only_b: only in per-region",
        "table o: frames differ ((2, 2) vs (2, 2))",
        "table v: frames differ ((2, 2) vs (2, 2))",
    ]
