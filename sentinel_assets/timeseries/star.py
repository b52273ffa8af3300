"""The star schema for BI tools, over every real reading of the lake.

* `dim_device`: a slowly changing dimension of type 2. A device gets a new version whenever
  its model, site, hardware revision or running firmware changes from one reading to the
  next; each version is valid over `[valid_from, valid_to)`, the first from the device's
  first reading, each `valid_to` the next version's `valid_from` (no overlap, no hole), the
  last open (`valid_to` NULL, `is_current`). `device_key` numbers the versions in
  (region, device, valid_from) order; it is rebuilt with the table.
* `dim_date`: one row per UTC day with a reading (`date_key` = YYYYMMDD).
* `fact_telemetry`: one row per real reading with `device_key` (the version in force at its
  time), `date_key`, and `valid_until` = the time of the device's next reading (NULL for its
  last), so "the state of device X at time T" is `ts <= T AND (T < valid_until OR valid_until
  IS NULL)`.
"""

from __future__ import annotations

import polars as pl

from sentinel_assets.timeseries.readings import ATTRIBUTES, KEYS, VALUES


def _changed(column: str) -> pl.Expr:
    before = pl.col(column).shift(1).over(KEYS)
    return pl.col(column).ne_missing(before)


def dim_device(readings: pl.LazyFrame) -> pl.LazyFrame:
    """SCD2 versions of every device (see the module doc). `readings` as from
    `readings.clean_readings` (one per device and time)."""
    ordered = readings.sort(*KEYS, "ts")
    first = pl.col("ts").rank("ordinal").over(KEYS) == 1
    changed = pl.any_horizontal(*(_changed(a) for a in ATTRIBUTES)) | first
    versions = (
        ordered.with_columns(changed.alias("_new"))
        .filter(pl.col("_new"))
        .select(*KEYS, pl.col("ts").alias("valid_from"), *ATTRIBUTES)
        .sort(*KEYS, "valid_from")
    )
    return (
        versions.with_columns(pl.col("valid_from").shift(-1).over(KEYS).alias("valid_to"))
        .with_columns(
            pl.col("valid_to").is_null().alias("is_current"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("device_key"),
        )
        .select("device_key", *KEYS, *ATTRIBUTES, "valid_from", "valid_to", "is_current")
    )


def date_key(column: str) -> pl.Expr:
    """YYYYMMDD of a date or UTC timestamp column, as Int32."""
    return pl.col(column).dt.strftime("%Y%m%d").cast(pl.Int32)


def dim_date(readings: pl.LazyFrame) -> pl.LazyFrame:
    """One row per UTC day that has a reading."""
    return (
        readings.select(pl.col("ts").dt.date().alias("date"))
        .unique()
        .select(
            date_key("date").alias("date_key"),
            "date",
            pl.col("date").dt.year().cast(pl.Int32).alias("year"),
            pl.col("date").dt.month().cast(pl.Int8).alias("month"),
            pl.col("date").dt.day().cast(pl.Int8).alias("day"),
            pl.col("date").dt.week().cast(pl.Int8).alias("iso_week"),
            pl.col("date").dt.weekday().cast(pl.Int8).alias("iso_weekday"),
            (pl.col("date").dt.weekday() >= 6).alias("is_weekend"),
        )
        .sort("date_key")
    )


def fact_telemetry(readings: pl.LazyFrame, devices: pl.LazyFrame) -> pl.LazyFrame:
    """One row per real reading, linked to the device version in force at its time."""
    facts = readings.sort(*KEYS, "ts").with_columns(
        pl.col("ts").shift(-1).over(KEYS).alias("valid_until"),
        date_key("ts").alias("date_key"),
    )
    keys = devices.select(*KEYS, "valid_from", "device_key").sort(*KEYS, "valid_from")
    return (
        facts.join_asof(
            keys,
            left_on="ts",
            right_on="valid_from",
            by=list(KEYS),
            strategy="backward",
            check_sortedness=False,
        )
        .with_columns((pl.col("temperature_c") * 9 / 5 + 32).alias("temperature_f"))
        .select(
            "record_id",
            "device_key",
            "date_key",
            *KEYS,
            "ts",
            "valid_until",
            "update_status",
            *VALUES[:3],
            "temperature_f",
            VALUES[3],
        )
        .sort(*KEYS, "ts")
    )
