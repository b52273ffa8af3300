"""Anomaly episodes: runs of real readings of one device that break one rule.

Rules (thresholds from `TimeseriesSettings`):

* `hot_low_battery`: temperature above `hot_temperature_c` while battery below `low_battery_pct`;
* `voltage_sag`: cell voltage below `sag_voltage_v` while battery still at least
  `sag_min_battery_pct` (the cell sags under load, it is not empty);
* `signal_collapse`: signal below `signal_collapse_dbm`;
* `temperature_zscore`: |temperature - its trailing mean| / its trailing standard deviation
  above `zscore_threshold` (window `zscore_window_minutes`, at least `zscore_min_readings`).

An episode is consecutive readings of a device that break the rule; it ends at a reading that
does not, or where the device was silent longer than `max_interpolation_gap` (an outage is
not evidence either way). Episodes are found over the adjacent days' readings too, then cut
at the day's bounds: a partition holds the part of each episode within its day, and says
whether the episode started before the day or goes on after it.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from sentinel_assets.contracts import ANOMALY_RULES
from sentinel_assets.timeseries.readings import KEYS, on_day
from sentinel_assets.timeseries.settings import TimeseriesSettings

RULES: tuple[str, ...] = ANOMALY_RULES


# What an episode row says, after its device keys and day (the dashboard shows the same).
EPISODE_COLUMNS: tuple[str, ...] = (
    "rule",
    "thresholds",
    "episode_start_ts",
    "episode_end_ts",
    "duration_minutes",
    "readings",
    "started_before_day",
    "continues_after_day",
    "peak_temperature_c",
    "min_battery_pct",
    "min_battery_voltage_v",
    "min_signal_dbm",
    "peak_abs_temperature_zscore",
)


def rule_conditions(settings: TimeseriesSettings) -> dict[str, tuple[pl.Expr, str]]:
    """Each rule's condition on a reading, and its thresholds as text."""
    s = settings
    temperature, battery = pl.col("temperature_c"), pl.col("battery_pct")
    return {
        "hot_low_battery": (
            (temperature > s.hot_temperature_c) & (battery < s.low_battery_pct),
            f"temperature_c > {s.hot_temperature_c:g} and battery_pct < {s.low_battery_pct:g}",
        ),
        "voltage_sag": (
            (pl.col("battery_voltage_v") < s.sag_voltage_v) & (battery >= s.sag_min_battery_pct),
            f"battery_voltage_v < {s.sag_voltage_v:g} and battery_pct >= {s.sag_min_battery_pct:g}",
        ),
        "signal_collapse": (
            pl.col("signal_dbm") < s.signal_collapse_dbm,
            f"signal_dbm < {s.signal_collapse_dbm:g}",
        ),
        "temperature_zscore": (
            pl.col("temperature_zscore").abs() > s.zscore_threshold,
            f"|temperature_zscore| > {s.zscore_threshold:g} over {s.zscore_window_minutes} min "
            f"(>= {s.zscore_min_readings} readings)",
        ),
    }


def with_zscore(readings: pl.LazyFrame, settings: TimeseriesSettings) -> pl.LazyFrame:
    """Readings with `temperature_zscore`: against the trailing window that ends at (and
    includes) the reading; NULL with too few readings or no spread."""
    window = f"{settings.zscore_window_minutes}m"
    temperature = pl.col("temperature_c")
    mean = temperature.rolling_mean_by("ts", window_size=window).over(KEYS)
    std = temperature.rolling_std_by("ts", window_size=window).over(KEYS)
    count = (
        temperature.is_not_null().cast(pl.Int64).rolling_sum_by("ts", window_size=window).over(KEYS)
    )
    return readings.sort(*KEYS, "ts").with_columns(
        pl.when((count >= settings.zscore_min_readings) & (std > 0))
        .then((temperature - mean) / std)
        .alias("temperature_zscore")
    )


def anomaly_episodes(
    readings: pl.LazyFrame, day: date, settings: TimeseriesSettings
) -> pl.LazyFrame:
    """One row per device, rule and episode (its part within `day`)."""
    scored = with_zscore(readings, settings)
    max_gap_us = settings.max_interpolation_gap_minutes * 60_000_000
    conditions = rule_conditions(settings)
    flagged = pl.concat(
        [
            scored.with_columns(
                pl.lit(rule).alias("rule"),
                pl.lit(text).alias("thresholds"),
                condition.fill_null(False).alias("_broken"),
            )
            for rule, (condition, text) in conditions.items()
        ]
    )
    group = [*KEYS, "rule"]
    silent = (pl.col("ts") - pl.col("ts").shift(1)).dt.total_microseconds() > max_gap_us
    prev_broken = pl.col("_broken").shift(1).fill_null(False)
    starts = pl.col("_broken") & (~prev_broken | silent.fill_null(True))
    ends_after = (
        pl.col("_broken")
        & pl.col("_broken").shift(-1).fill_null(False)
        & ~(silent.shift(-1).fill_null(True))
    )
    episodes = (
        flagged.sort(*group, "ts")
        .with_columns(
            starts.cum_sum().over(group).alias("_episode"),
            ends_after.over(group).alias("_continues"),
        )
        .filter(pl.col("_broken"))
    )
    today = on_day(episodes, day)
    bounds = episodes.group_by(*group, "_episode").agg(
        pl.col("ts").min().alias("_first"), pl.col("ts").max().alias("_last")
    )
    return (
        today.group_by(*group, "_episode")
        .agg(
            pl.col("thresholds").first(),
            pl.col("ts").min().alias("episode_start_ts"),
            pl.col("ts").max().alias("episode_end_ts"),
            pl.len().cast(pl.Int64).alias("readings"),
            pl.col("temperature_c").max().alias("peak_temperature_c"),
            pl.col("battery_pct").min().alias("min_battery_pct"),
            pl.col("battery_voltage_v").min().alias("min_battery_voltage_v"),
            pl.col("signal_dbm").min().alias("min_signal_dbm"),
            pl.col("temperature_zscore").abs().max().alias("peak_abs_temperature_zscore"),
            pl.col("_continues").sort_by("ts").last().alias("continues_after_day"),
        )
        .join(bounds, on=[*group, "_episode"], how="left")
        .with_columns(
            (pl.col("_first") < pl.col("episode_start_ts")).alias("started_before_day"),
            (
                (pl.col("episode_end_ts") - pl.col("episode_start_ts")).dt.total_seconds() / 60.0
            ).alias("duration_minutes"),
            pl.lit(str(day)).str.to_date().alias("event_date"),
        )
        .sort(*KEYS, "rule", "episode_start_ts")
        .select(*KEYS, "event_date", *EPISODE_COLUMNS)
    )
