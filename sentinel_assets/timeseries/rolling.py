"""Trailing-window features per device and grid slot, over real readings only.

For a slot `[t, t + interval)` and a window `w`, the window is `[t + interval - w,
t + interval)`: the real readings of the last `w` up to the slot's end (interpolated values
never count). Per window: the mean of each value, the number of readings, and the battery
drain in % per hour: minus the least-squares slope of battery % over time (NULL with fewer
than two readings).

Computed from running sums per device (count, sum, and for the slope sum of t, t² and t·y):
each window is the difference of two as-of lookups, so every window length costs the same,
and no rolling loop runs per slot.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from sentinel_assets.timeseries.readings import KEYS, VALUES, day_start
from sentinel_assets.timeseries.settings import TimeseriesSettings, window_label

_SUMS = (
    "_n",
    *(f"_c_{v}" for v in VALUES),
    *(f"_s_{v}" for v in VALUES),
    "_sx",
    "_sxx",
    "_sxy",
)


def running_sums(readings: pl.LazyFrame, origin: pl.Expr) -> pl.LazyFrame:
    """Per device, in time order: running count and sums up to and including each reading.
    Time `x` is hours since `origin` (small numbers, so the sums keep their precision)."""
    x = (pl.col("ts") - origin).dt.total_microseconds().cast(pl.Float64) / 3.6e9
    battery = pl.col("battery_pct")
    return (
        readings.sort(*KEYS, "ts")
        .select(
            *KEYS,
            "ts",
            pl.lit(1, pl.Int64).alias("_n"),
            *(pl.col(v).is_not_null().cast(pl.Int64).alias(f"_c_{v}") for v in VALUES),
            *(pl.col(v).fill_null(0.0).alias(f"_s_{v}") for v in VALUES),
            x.alias("_sx"),
            (x * x).alias("_sxx"),
            (x * battery).alias("_sxy"),
        )
        .with_columns(pl.col(c).cum_sum().over(KEYS) for c in _SUMS)
    )


def _sums_before(frame: pl.LazyFrame, sums: pl.LazyFrame, at: str, suffix: str) -> pl.LazyFrame:
    """The running sums of the last reading strictly before `frame[at]` (zeros if none)."""
    joined = frame.sort(*KEYS, at).join_asof(
        sums.rename({c: f"{c}{suffix}" for c in _SUMS}),
        left_on=at,
        right_on="ts",
        by=list(KEYS),
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    return joined.drop("ts").with_columns(pl.col(f"{c}{suffix}").fill_null(0) for c in _SUMS)


def rolling_features(
    grid: pl.LazyFrame, readings: pl.LazyFrame, day: date, settings: TimeseriesSettings
) -> pl.LazyFrame:
    """`grid` (keys, `slot_ts`, ...) with, per window label L: `readings_L`,
    `<value>_mean_L` for each value, and `battery_drain_pct_per_h_L`."""
    origin = pl.lit(day_start(day))
    sums = running_sums(readings, origin)
    frame = grid.with_columns((pl.col("slot_ts") + settings.interval).alias("_end"))
    frame = _sums_before(frame, sums, "_end", "_end")
    features: list[pl.Expr] = []
    for minutes in settings.rolling_windows_minutes:
        label = window_label(minutes)
        start = f"_start_{label}"
        frame = frame.with_columns((pl.col("_end") - timedelta(minutes=minutes)).alias(start))
        frame = _sums_before(frame, sums, start, f"_{label}")

        def window(c: str, label: str = label) -> pl.Expr:
            return pl.col(f"{c}_end") - pl.col(f"{c}_{label}")

        n = window("_n").cast(pl.Float64)
        features.append(window("_n").alias(f"readings_{label}"))
        for v in VALUES:
            count = window(f"_c_{v}")
            features.append(
                pl.when(count > 0).then(window(f"_s_{v}") / count).alias(f"{v}_mean_{label}")
            )
        sx, sy = window("_sx"), window("_s_battery_pct")
        denominator = n * window("_sxx") - sx * sx
        slope = (n * window("_sxy") - sx * sy) / denominator
        features.append(
            pl.when((n >= 2) & (denominator > 1e-12 * n * n))
            .then(-slope)
            .alias(f"battery_drain_pct_per_h_{label}")
        )
    helper = [c for c in frame.collect_schema().names() if c.startswith("_")]
    return frame.with_columns(features).drop(helper).sort(*KEYS, "slot_ts")
