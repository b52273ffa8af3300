"""The real readings a day's time series is computed from, in one shape.

A day's series needs more than the day: the trailing windows reach back into the previous day,
and a gap that spans midnight is bridged only with the next day's first reading. So the
readings of a date x region partition are read with those of the adjacent date partitions
(`partition_readings`): the result depends on what the lake holds, never on how a backfill was
split into runs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl

from sentinel_assets.contracts import TIMESERIES_VALUES
from sentinel_assets.telemetry import lake

KEYS: tuple[str, ...] = ("region", "device_id")
VALUES: tuple[str, ...] = TIMESERIES_VALUES
ATTRIBUTES: tuple[str, ...] = ("model", "site", "hardware_rev", "firmware_version")
READING_DTYPES: dict[str, pl.DataType] = {
    "record_id": pl.Int64(),
    "region": pl.String(),
    "device_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    **{value: pl.Float64() for value in VALUES},
    "update_status": pl.String(),
    "model": pl.String(),
    "site": pl.String(),
    "hardware_rev": pl.String(),
    "firmware_version": pl.String(),
}


def day_start(day: date) -> datetime:
    """Midnight UTC that starts `day` (all times here are UTC: no daylight saving)."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def clean_readings(events: pl.LazyFrame) -> pl.LazyFrame:
    """Events as readings: values as Float64 (signal too, so it can be interpolated), the
    firmware the device runs (`firmware_to` once the update succeeded, else `firmware_from`),
    one reading per device and time (duplicate timestamps: the latest ingested wins, ties by
    record id), sorted by region, device and time whatever order they arrived in."""
    return (
        events.with_columns(
            pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
            *(pl.col(v).cast(pl.Float64) for v in VALUES),
            pl.when(pl.col("update_status") == "success")
            .then(pl.col("firmware_to"))
            .otherwise(pl.col("firmware_from"))
            .alias("firmware_version"),
        )
        .sort(*KEYS, "ts", "ingested_at", "record_id")
        .unique(subset=[*KEYS, "ts"], keep="last", maintain_order=True)
        .select(list(READING_DTYPES))
    )


def partition_readings(lake_root: Path, day: date, region: str) -> pl.LazyFrame:
    """The readings of the partition's day with the whole previous day and the next day's
    readings (the next day's are needed only up to the interpolation limit and for the end of
    an episode, but reading the partition whole keeps this simple and exact)."""
    parts = [
        lake.scan_partition(lake_root, str(day + timedelta(days=offset)), region)
        for offset in (-1, 0, 1)
    ]
    return clean_readings(pl.concat(parts, how="vertical_relaxed"))


def on_day(frame: pl.LazyFrame, day: date, column: str = "ts") -> pl.LazyFrame:
    """Rows whose `column` lies within the UTC day."""
    start = day_start(day)
    return frame.filter(pl.col(column) >= start, pl.col(column) < start + timedelta(days=1))
