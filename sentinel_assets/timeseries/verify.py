"""The blocking rules of the time-series assets, as plain functions over frames.

Each returns a `Finding`: whether the rule holds, the counts that show it, and a few rows that
break it. Each recomputes what it checks from the real readings where it can (an independent
as-of lookup), rather than trusting the columns the asset wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from sentinel_assets.timeseries.readings import KEYS, VALUES
from sentinel_assets.timeseries.settings import TimeseriesSettings

EXAMPLES = 10
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Finding:
    passed: bool
    counts: Mapping[str, int | float] = field(default_factory=dict)
    examples: pl.DataFrame = field(default_factory=pl.DataFrame)


def _finding(broken: pl.DataFrame, checked: int, name: str) -> Finding:
    return Finding(
        passed=broken.height == 0,
        counts={"checked_rows": checked, name: broken.height},
        examples=broken.head(EXAMPLES),
    )


def _around(frame: pl.DataFrame, readings: pl.DataFrame, value: str) -> pl.DataFrame:
    """For each slot, time and value of the real readings of `value` just before and at or
    after it (as-of lookups over the readings, independent of the asset's gap columns)."""
    real = readings.filter(pl.col(value).is_not_null()).select(
        *KEYS, pl.col("ts").alias("_t"), pl.col(value).alias("_v")
    )
    real = real.sort(*KEYS, "_t")
    left = frame.sort(*KEYS, "slot_ts")
    before = left.join_asof(
        real, left_on="slot_ts", right_on="_t", by=list(KEYS), strategy="backward",
        allow_exact_matches=False, check_sortedness=False,
    ).rename({"_t": "before_ts", "_v": "before_value"})  # fmt: skip
    return before.join_asof(
        real, left_on="slot_ts", right_on="_t", by=list(KEYS), strategy="forward",
        check_sortedness=False,
    ).rename({"_t": "after_ts", "_v": "after_value"})  # fmt: skip


def no_interpolation_across_long_gaps(
    timeseries: pl.DataFrame, readings: pl.DataFrame, settings: TimeseriesSettings
) -> Finding:
    """No interpolated value bridges real readings further apart than max_interpolation_gap,
    and every empty slot whose real readings are within it is filled (not an outage)."""
    empty = timeseries.filter(~pl.col("is_measured")).select(
        *KEYS, "slot_ts", "is_interpolated", "battery_pct"
    )
    around = _around(empty, readings, "battery_pct")
    gap = pl.col("after_ts") - pl.col("before_ts")
    within = (gap.is_not_null() & (gap <= settings.max_gap)).alias("within_limit")
    broken = around.with_columns(gap.alias("gap"), within).filter(
        pl.col("is_interpolated") != pl.col("within_limit")
    )
    return _finding(broken.drop("battery_pct"), empty.height, "slots_breaking_the_gap_limit")


def interpolated_between_neighbours(timeseries: pl.DataFrame, readings: pl.DataFrame) -> Finding:
    """Every interpolated value lies between the real readings before and after its slot."""
    interpolated = timeseries.filter(pl.col("is_interpolated"))
    broken = []
    for value in VALUES:
        around = _around(
            interpolated.filter(pl.col(value).is_not_null()).select(*KEYS, "slot_ts", value),
            readings,
            value,
        )
        low = pl.min_horizontal("before_value", "after_value") - _TOLERANCE
        high = pl.max_horizontal("before_value", "after_value") + _TOLERANCE
        outside = around.filter(
            pl.col("before_value").is_null()
            | pl.col("after_value").is_null()
            | (pl.col(value) < low)
            | (pl.col(value) > high)
        )
        broken.append(
            outside.select(
                *KEYS,
                "slot_ts",
                pl.lit(value).alias("value"),
                pl.col(value).alias("interpolated"),
                "before_value",
                "after_value",
            )
        )
    return _finding(pl.concat(broken), interpolated.height, "values_outside_their_neighbours")


def scd2_windows_contiguous(devices: pl.DataFrame) -> Finding:
    """Each device's dim_device versions follow each other without overlap or hole: each
    valid_to is the next version's valid_from, valid_from < valid_to, and exactly the last
    version is open (valid_to NULL, is_current)."""
    ordered = devices.sort(*KEYS, "valid_from").with_columns(
        pl.col("valid_from").shift(-1).over(KEYS).alias("next_valid_from")
    )
    broken = ordered.filter(
        pl.col("valid_to").ne_missing(pl.col("next_valid_from"))
        | (pl.col("valid_to") <= pl.col("valid_from")).fill_null(False)
        | (pl.col("is_current") != pl.col("valid_to").is_null())
    )
    return _finding(broken, devices.height, "versions_with_overlap_or_hole")


def valid_until_is_next_reading(facts: pl.DataFrame) -> Finding:
    """Every fact row's valid_until is the time of the same device's next reading, NULL for
    its last reading."""
    ordered = facts.sort(*KEYS, "ts").with_columns(
        pl.col("ts").shift(-1).over(KEYS).alias("next_reading_ts")
    )
    broken = ordered.filter(pl.col("valid_until").ne_missing(pl.col("next_reading_ts"))).select(
        *KEYS, "ts", "valid_until", "next_reading_ts"
    )
    return _finding(broken, facts.height, "rows_with_wrong_valid_until")


def anomaly_rate_within_limit(region_stats: pl.DataFrame) -> Finding:
    """The share of the region's devices with an anomaly episode that day is at most
    max_anomaly_rate (breaking it raises an alert)."""
    broken = region_stats.filter(pl.col("anomaly_rate") > pl.col("max_anomaly_rate")).select(
        "region", "event_date", "devices", "devices_with_anomaly", "anomaly_rate",
        "max_anomaly_rate",
    )  # fmt: skip
    counts: dict[str, int | float] = {
        "regions": region_stats.height,
        "regions_over_limit": broken.height,
    }
    if region_stats.height:
        counts["anomaly_rate"] = float(region_stats["anomaly_rate"].max() or 0.0)
    return Finding(passed=broken.height == 0, counts=counts, examples=broken)
