"""Daily statistics per device and per region.

Value statistics (min, max, mean, 5th/50th/95th percentile) are over the day's real readings.
Coverage compares what arrived with what the grid expects: one reading per grid slot
(`readings_expected` = slots a day), `coverage` = measured slots / slots; the interpolated and
outage shares are of slots too.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from sentinel_assets.contracts import DAILY_STATISTICS
from sentinel_assets.timeseries.anomalies import RULES
from sentinel_assets.timeseries.readings import KEYS, VALUES, on_day
from sentinel_assets.timeseries.settings import TimeseriesSettings

_HOW = {"min": "min", "max": "max", "mean": "mean", "p05": "0.05", "p50": "0.5", "p95": "0.95"}
STATISTICS: tuple[tuple[str, str], ...] = tuple((name, _HOW[name]) for name, _ in DAILY_STATISTICS)


def _value_stats(v: str) -> list[pl.Expr]:
    column = pl.col(v)
    exprs = []
    for name, how in STATISTICS:
        if how in ("min", "max", "mean"):
            expr = getattr(column, how)()
        else:
            expr = column.quantile(float(how), interpolation="linear")
        exprs.append(expr.alias(f"{v}_{name}"))
    return exprs


def _day_column(day: date) -> pl.Expr:
    return pl.lit(day, pl.Date).alias("event_date")


def daily_device_stats(
    readings: pl.LazyFrame,
    timeseries: pl.LazyFrame,
    anomalies: pl.LazyFrame,
    day: date,
    settings: TimeseriesSettings,
) -> pl.LazyFrame:
    """One row per device of the day."""
    values = (
        on_day(readings, day)
        .group_by(*KEYS)
        .agg(
            pl.len().cast(pl.Int64).alias("readings_received"),
            *(e for v in VALUES for e in _value_stats(v)),
        )
    )
    slots = timeseries.group_by(*KEYS).agg(
        pl.len().cast(pl.Int64).alias("slots"),
        pl.col("is_measured").sum().cast(pl.Int64).alias("slots_measured"),
        pl.col("is_interpolated").sum().cast(pl.Int64).alias("slots_interpolated"),
        pl.col("is_outage").sum().cast(pl.Int64).alias("slots_outage"),
    )
    episodes = anomalies.group_by(*KEYS).agg(pl.len().cast(pl.Int64).alias("anomaly_episodes"))
    return (
        slots.join(values, on=list(KEYS), how="left")
        .join(episodes, on=list(KEYS), how="left")
        .with_columns(
            _day_column(day),
            pl.col("readings_received").fill_null(0),
            pl.lit(settings.slots_per_day, pl.Int64).alias("readings_expected"),
            (pl.col("slots_measured") / pl.col("slots")).alias("coverage"),
            (pl.col("slots_interpolated") / pl.col("slots")).alias("interpolated_share"),
            (pl.col("slots_outage") / pl.col("slots")).alias("outage_share"),
            pl.col("anomaly_episodes").fill_null(0),
        )
        .select(
            *KEYS,
            "event_date",
            "readings_received",
            "readings_expected",
            "slots",
            "slots_measured",
            "slots_interpolated",
            "slots_outage",
            "coverage",
            "interpolated_share",
            "outage_share",
            "anomaly_episodes",
            *(f"{v}_{name}" for v in VALUES for name, _ in STATISTICS),
        )
        .sort(*KEYS)
    )


def daily_region_stats(
    readings: pl.LazyFrame,
    device_stats: pl.LazyFrame,
    anomalies: pl.LazyFrame,
    day: date,
    settings: TimeseriesSettings,
) -> pl.LazyFrame:
    """One row per region of the day: devices, coverage, shares, anomaly episodes by rule,
    the share of devices with an episode against the alert limit, value statistics."""
    values = (
        on_day(readings, day).group_by("region").agg(*(e for v in VALUES for e in _value_stats(v)))
    )
    by_rule = anomalies.group_by("region").agg(
        pl.len().cast(pl.Int64).alias("anomaly_episodes"),
        pl.col("device_id").n_unique().cast(pl.Int64).alias("devices_with_anomaly"),
        *(
            (pl.col("rule") == rule).sum().cast(pl.Int64).alias(f"episodes_{rule}")
            for rule in RULES
        ),
    )
    totals = device_stats.group_by("region").agg(
        pl.len().cast(pl.Int64).alias("devices"),
        pl.col("readings_received").sum().cast(pl.Int64),
        pl.col("readings_expected").sum().cast(pl.Int64),
        pl.col("slots").sum().cast(pl.Int64),
        pl.col("slots_measured").sum().cast(pl.Int64),
        pl.col("slots_interpolated").sum().cast(pl.Int64),
        pl.col("slots_outage").sum().cast(pl.Int64),
    )
    counts = ["anomaly_episodes", "devices_with_anomaly", *(f"episodes_{r}" for r in RULES)]
    return (
        totals.join(by_rule, on="region", how="left")
        .join(values, on="region", how="left")
        .with_columns(
            _day_column(day),
            *(pl.col(c).fill_null(0) for c in counts),
            (pl.col("slots_measured") / pl.col("slots")).alias("coverage"),
            (pl.col("slots_interpolated") / pl.col("slots")).alias("interpolated_share"),
            (pl.col("slots_outage") / pl.col("slots")).alias("outage_share"),
        )
        .with_columns(
            (pl.col("devices_with_anomaly") / pl.col("devices")).alias("anomaly_rate"),
            pl.lit(settings.max_anomaly_rate).alias("max_anomaly_rate"),
        )
        .select(
            "region",
            "event_date",
            "devices",
            "readings_received",
            "readings_expected",
            "slots",
            "slots_measured",
            "slots_interpolated",
            "slots_outage",
            "coverage",
            "interpolated_share",
            "outage_share",
            *counts,
            "anomaly_rate",
            "max_anomaly_rate",
            *(f"{v}_{name}" for v in VALUES for name, _ in STATISTICS),
        )
        .sort("region")
    )
