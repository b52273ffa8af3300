"""Readings on a regular grid, with gaps filled only where they are short.

Each device of a day gets one row per grid slot `[slot_ts, slot_ts + interval)`:

* a slot with real readings is **measured**: each value is the mean of its readings;
* an empty slot is **interpolated** when the real readings around it (the last before, the
  first after, per value) are at most `max_interpolation_gap` apart: the value at `slot_ts`
  on the straight line between them, weighted by their actual times (`numpy.interp`);
* otherwise it is an **outage**: values NULL, never bridged.

Neighbours come from the same region and device only; the day's first and last slots find
theirs in the adjacent days' readings (`readings.partition_readings`). No per-row Python: one
sort of readings and slots together, forward/backward fills per device.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from sentinel_assets.timeseries.readings import KEYS, VALUES, day_start, on_day
from sentinel_assets.timeseries.settings import TimeseriesSettings

US = pl.Datetime("us", "UTC")


def grid_slots(devices: pl.LazyFrame, day: date, settings: TimeseriesSettings) -> pl.LazyFrame:
    """Every (region, device) of `devices` times every slot start of the UTC day."""
    start = day_start(day)
    slots = pl.datetime_range(
        start,
        start + timedelta(days=1),
        settings.interval,
        closed="left",
        time_unit="us",
        time_zone="UTC",
        eager=True,
    ).alias("slot_ts")
    return devices.join(pl.LazyFrame(slots), how="cross")


def measured_slots(day_readings: pl.LazyFrame, settings: TimeseriesSettings) -> pl.LazyFrame:
    """Mean of each value over the real readings of each occupied slot, and their number."""
    return day_readings.group_by(
        *KEYS, pl.col("ts").dt.truncate(f"{settings.interval_minutes}m").alias("slot_ts")
    ).agg(
        pl.len().cast(pl.Int64).alias("readings_in_slot"),
        *(pl.col(v).mean().alias(f"_m_{v}") for v in VALUES),
    )


def _neighbours(value: str) -> list[pl.Expr]:
    """For each row: time and value of the last real reading of `value` at or before it and
    of the first at or after it, within the same device."""
    real_ts = pl.when(pl.col(value).is_not_null()).then(pl.col("ts"))
    return [
        real_ts.forward_fill().over(KEYS).alias(f"_pt_{value}"),
        pl.col(value).forward_fill().over(KEYS).alias(f"_pv_{value}"),
        real_ts.backward_fill().over(KEYS).alias(f"_nt_{value}"),
        pl.col(value).backward_fill().over(KEYS).alias(f"_nv_{value}"),
    ]


def _interpolated(value: str, max_gap_us: int) -> tuple[pl.Expr, pl.Expr]:
    """The value on the line between its neighbours at `slot_ts`, when they are at most the
    limit apart (else NULL), and the gap between them in microseconds."""
    prev_t, next_t = pl.col(f"_pt_{value}"), pl.col(f"_nt_{value}")
    prev_v, next_v = pl.col(f"_pv_{value}"), pl.col(f"_nv_{value}")
    span = (next_t - prev_t).dt.total_microseconds()
    offset = (pl.col("slot_ts") - prev_t).dt.total_microseconds()
    line = prev_v + (next_v - prev_v) * (offset.cast(pl.Float64) / span.cast(pl.Float64))
    bridged = pl.when(span == 0).then(prev_v).otherwise(line)
    return pl.when(span <= max_gap_us).then(bridged), span


def resample(readings: pl.LazyFrame, day: date, settings: TimeseriesSettings) -> pl.LazyFrame:
    """The day's grid for every device with a real reading that day (see the module doc).
    Columns: keys, `slot_ts`, `readings_in_slot`, `is_measured`, `is_interpolated`,
    `is_outage`, `gap_start_ts`/`gap_end_ts`/`gap_minutes` (the real readings around an empty
    slot), the values, `temperature_f`."""
    today = on_day(readings, day)
    devices = today.select(*KEYS).unique()
    grid = grid_slots(devices, day, settings)
    measured = measured_slots(today, settings)
    slot_rows = grid.select(
        *KEYS,
        pl.col("slot_ts").alias("ts"),
        *(pl.lit(None, pl.Float64).alias(v) for v in VALUES),
        pl.lit(True).alias("_slot"),
    )
    real_rows = readings.join(devices, on=list(KEYS), how="semi").select(
        *KEYS, "ts", *VALUES, pl.lit(False).alias("_slot")
    )
    points = (
        pl.concat([real_rows, slot_rows])
        .sort(*KEYS, "ts")
        .with_columns(*(e for v in VALUES for e in _neighbours(v)))
        .filter(pl.col("_slot"))
        .rename({"ts": "slot_ts"})
        .drop(*VALUES, "_slot")
    )
    max_gap_us = settings.max_interpolation_gap_minutes * 60_000_000
    line, span = _interpolated("battery_pct", max_gap_us)
    frame = points.join(measured, on=[*KEYS, "slot_ts"], how="left").with_columns(
        pl.col("readings_in_slot").fill_null(0)
    )
    is_measured = pl.col("readings_in_slot") > 0
    is_interpolated = ~is_measured & line.is_not_null()
    values = []
    for v in VALUES:
        interpolated, _ = _interpolated(v, max_gap_us)
        values.append(
            pl.when(is_measured)
            .then(pl.col(f"_m_{v}"))
            .when(is_interpolated)
            .then(interpolated)
            .alias(v)
        )
    gap = pl.when(~is_measured)
    return (
        frame.with_columns(
            is_measured.alias("is_measured"),
            is_interpolated.alias("is_interpolated"),
            (~is_measured & ~is_interpolated).alias("is_outage"),
            gap.then(pl.col("_pt_battery_pct")).alias("gap_start_ts"),
            gap.then(pl.col("_nt_battery_pct")).alias("gap_end_ts"),
            gap.then(span.cast(pl.Float64) / 60e6).alias("gap_minutes"),
            *values,
        )
        .with_columns((pl.col("temperature_c") * 9 / 5 + 32).alias("temperature_f"))
        .with_columns(pl.lit(day, pl.Date).alias("event_date"))
        .select(
            *KEYS,
            "event_date",
            "slot_ts",
            "readings_in_slot",
            "is_measured",
            "is_interpolated",
            "is_outage",
            "gap_start_ts",
            "gap_end_ts",
            "gap_minutes",
            "battery_pct",
            "battery_voltage_v",
            "temperature_c",
            "temperature_f",
            "signal_dbm",
        )
    )
