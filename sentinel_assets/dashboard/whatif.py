"""What-if: the recovery policy's thresholds changed, decided again with the pipeline's own
`recovery.decide_recovery` over the sanitized fleet, and compared with what was materialized;
and the anomaly rules' thresholds changed, the episodes found again with the pipeline's own
`timeseries.anomalies.anomaly_episodes` over a day's readings, compared with
`telemetry_anomalies` and `daily_region_stats`.

Plain Polars over frames the caller loaded (see `data.whatif_inputs`); the dashboard keeps
the sanitized fleet in memory, so a changed threshold costs one `decide_recovery` call plus a
few joins and group-bys (`benchmarks/dashboard_whatif.py` measures the ratio).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pydantic

from sentinel_assets.contracts import ACTIONS, BOUNDS, FAILURE_KINDS
from sentinel_assets.recovery import RecoveryPolicy, campaign_health, decide_recovery
from sentinel_assets.timeseries.anomalies import RULES, anomaly_episodes, rule_conditions
from sentinel_assets.timeseries.settings import TimeseriesSettings

KEY = ("region", "record_id")
NO_ACTION = "none"  # a device with no decision: healthy, or pending in a running campaign


@dataclass(frozen=True)
class Threshold:
    """One numeric threshold of the policy and the range an operator may move it in (the
    range the policy itself accepts)."""

    name: str
    label: str
    low: float
    high: float
    step: float
    integer: bool = False
    unit: str = ""


def _bounds(column: str) -> tuple[float, float]:
    return BOUNDS[column].low, BOUNDS[column].high


THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        "min_rollback_battery_pct",
        "Rollback: minimum battery",
        *_bounds("battery_pct"),
        1,
        unit="%",
    ),
    Threshold(
        "min_rollback_voltage_v",
        "Rollback: minimum voltage",
        *_bounds("battery_voltage_v"),
        0.01,
        unit="V",
    ),
    Threshold(
        "max_rollback_temperature_c",
        "Rollback: maximum temperature",
        *_bounds("temperature_c"),
        1,
        unit="°C",
    ),
    Threshold(
        "max_boot_attempts",
        "Trial boots before rollback",
        1,
        BOUNDS["boot_attempts"].high,
        1,
        integer=True,
    ),
    Threshold(
        "min_retry_battery_pct", "Retry: minimum battery", *_bounds("battery_pct"), 1, unit="%"
    ),
    Threshold("max_retries", "Retry: maximum retries", 0, 10, 1, integer=True),
    Threshold("min_signal_dbm", "Retry: minimum signal", *_bounds("signal_dbm"), 1, unit="dBm"),
    Threshold("stale_after_hours", "Stale after", 1, 24 * 30, 1, unit="h"),
    Threshold("abort_failure_rate", "Abort: failure rate", 0.01, 1.0, 0.01),
    Threshold("abort_min_attempted", "Abort: minimum attempted", 1, 100_000, 1, integer=True),
    Threshold("retry_backoff_minutes", "Retry backoff (first)", 1, 24 * 60, 1, unit="min"),
    Threshold("retry_backoff_max_minutes", "Retry backoff (cap)", 1, 7 * 24 * 60, 1, unit="min"),
    # Acts only where decisions get a battery trend (the time series); the what-if has none yet.
    Threshold("max_battery_drain_pct_per_h", "Trend: max battery drain", 0.1, 100, 0.1, unit="%/h"),
)
RETRIABLE_CHOICES: tuple[str, ...] = FAILURE_KINDS


def policy_field_names() -> tuple[str, ...]:
    """The policy's fields, whether it is a dataclass or (after the merge) a pydantic model."""
    model_fields = getattr(RecoveryPolicy, "model_fields", None)
    if model_fields is not None:
        return tuple(model_fields)
    return tuple(field.name for field in dataclasses.fields(RecoveryPolicy))


def policy_values(policy: RecoveryPolicy) -> dict[str, Any]:
    """Every field of a policy as plain values (the failure kinds as a list), the shape of
    the `settings.recovery` run config."""
    values = {name: getattr(policy, name) for name in policy_field_names()}
    values["retriable_failure_kinds"] = list(values["retriable_failure_kinds"])
    return values


def make_policy(values: Mapping[str, Any]) -> RecoveryPolicy:
    """A policy from (some of) its values, the rest default; ValueError names a bad one."""
    known = set(policy_field_names())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown recovery policy field(s): {', '.join(unknown)}")
    kwargs = dict(values)
    if "retriable_failure_kinds" in kwargs:
        kwargs["retriable_failure_kinds"] = tuple(kwargs["retriable_failure_kinds"])
    for threshold in THRESHOLDS:
        if threshold.integer and threshold.name in kwargs:
            kwargs[threshold.name] = int(kwargs[threshold.name])
    return RecoveryPolicy(**kwargs)


def decision_inputs(fleet: pl.DataFrame) -> list[str]:
    """The fleet's columns that `decide_recovery` reads: each one it fails without (probed on
    an empty frame, so it follows whatever the pipeline's function needs)."""
    empty, as_of = fleet.head(0), datetime.now(UTC)
    needed = []
    for column in fleet.columns:
        try:
            decide_recovery(empty.drop(column), RecoveryPolicy(), as_of=as_of)
        except pl.exceptions.ColumnNotFoundError:
            needed.append(column)
    return needed


def slim_fleet(fleet: pl.DataFrame) -> pl.DataFrame:
    """The fleet with only the columns decisions depend on: what the dashboard keeps in
    memory, so that every recompute copies less (the decisions are the same)."""
    return fleet.select(decision_inputs(fleet))


@dataclass(frozen=True)
class WhatIf:
    """The decisions under a policy and how they differ from the materialized ones."""

    policy: RecoveryPolicy
    decisions: pl.DataFrame  # decide_recovery's output, unchanged
    counts: pl.DataFrame  # region, action, materialized, what_if, change
    campaigns: (
        pl.DataFrame
    )  # region, attempted, failures, failure_rate, halted_before, halted, verdict
    changes: pl.DataFrame  # one row per device whose action changes

    def wide_counts(self) -> pl.DataFrame:
        """Region rows, one column per action with its what-if count and one with the change."""
        return wide_counts(self.counts)

    @property
    def halting(self) -> list[str]:
        return self.campaigns.filter(pl.col("verdict") == "halts")["region"].to_list()

    @property
    def resuming(self) -> list[str]:
        return self.campaigns.filter(pl.col("verdict") == "resumes")["region"].to_list()


def compare_by_region(
    materialized: pl.DataFrame, what_if: pl.DataFrame, key: str, values: Sequence[str]
) -> pl.DataFrame:
    """Every region (of either side) x value of `key`: materialized and what-if row counts
    and the change, in `values` order."""
    regions = pl.concat([materialized.select("region"), what_if.select("region")]).unique()
    grid = regions.join(pl.DataFrame({key: list(values)}), how="cross")

    def counted(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("region", key).agg(pl.len().cast(pl.Int64).alias(name))

    return (
        grid.join(counted(materialized, "materialized"), on=["region", key], how="left")
        .join(counted(what_if, "what_if"), on=["region", key], how="left")
        .with_columns(pl.col("materialized", "what_if").fill_null(0))
        .with_columns((pl.col("what_if") - pl.col("materialized")).alias("change"))
        .with_columns(pl.col(key).cast(pl.Enum(list(values))))
        .sort("region", key)
        .with_columns(pl.col(key).cast(pl.String))
    )


def compare_counts(materialized: pl.DataFrame, what_if: pl.DataFrame) -> pl.DataFrame:
    """Every region x action of either side: materialized and what-if counts and the change."""
    return compare_by_region(materialized, what_if, "action", ACTIONS)


def wide_counts(counts: pl.DataFrame) -> pl.DataFrame:
    columns = []
    for action in ACTIONS:
        columns += [action, f"{action} change"]
    if counts.is_empty():
        return pl.DataFrame(schema={"region": pl.String, **dict.fromkeys(columns, pl.Int64)})
    what_if = counts.pivot("action", index="region", values="what_if")
    change = counts.pivot("action", index="region", values="change").rename(
        {a: f"{a} change" for a in ACTIONS if a in counts["action"]}
    )
    return what_if.join(change, on="region").select("region", *columns).sort("region")


def compare_campaigns(materialized: pl.DataFrame, what_if: pl.DataFrame) -> pl.DataFrame:
    """Per region: the abort rule's numbers under the policy and whether it halts, resumes,
    stays halted or stays running compared with the materialized campaign status."""
    before = materialized.select("region", pl.col("halted").alias("halted_before"))
    return (
        what_if.select("region", "attempted", "failures", "failure_rate", "halted")
        .join(before, on="region", how="left")
        .with_columns(
            pl.when(pl.col("halted_before").is_null())
            .then(pl.when(pl.col("halted")).then(pl.lit("halted")).otherwise(pl.lit("running")))
            .when(pl.col("halted") & ~pl.col("halted_before"))
            .then(pl.lit("halts"))
            .when(~pl.col("halted") & pl.col("halted_before"))
            .then(pl.lit("resumes"))
            .when(pl.col("halted"))
            .then(pl.lit("stays halted"))
            .otherwise(pl.lit("stays running"))
            .alias("verdict")
        )
        .select(
            "region", "attempted", "failures", "failure_rate", "halted_before", "halted", "verdict"
        )
        .sort("region")
    )


def changed_devices(materialized: pl.DataFrame, what_if: pl.DataFrame) -> pl.DataFrame:
    """Devices whose action differs (a device without a decision counts as `none`): its
    region, record and device id, status, the action and rule before and after, and the
    what-if reason. Both frames have the decision columns `device_id`, `update_status`,
    `action` and `reason_code`."""
    before = materialized.select(
        *KEY,
        pl.col("device_id").alias("__device_before"),
        pl.col("update_status").alias("__status_before"),
        pl.col("action").alias("action_before"),
        pl.col("reason_code").alias("reason_code_before"),
    )
    after = what_if.select(
        *KEY,
        "device_id",
        "update_status",
        pl.col("action").alias("action_after"),
        pl.col("reason_code").alias("reason_code_after"),
        pl.col("reason").alias("reason_after"),
    )
    return (
        before.join(after, on=list(KEY), how="full", coalesce=True)
        .with_columns(
            pl.col("action_before", "action_after").fill_null(NO_ACTION),
            pl.coalesce("device_id", "__device_before").alias("device_id"),
            pl.coalesce("update_status", "__status_before").alias("update_status"),
        )
        .filter(pl.col("action_before") != pl.col("action_after"))
        .select(
            *KEY,
            "device_id",
            "update_status",
            "action_before",
            "action_after",
            "reason_code_before",
            "reason_code_after",
            "reason_after",
        )
        .sort(*KEY)
    )


def what_if(
    fleet: pl.DataFrame,
    materialized_decisions: pl.DataFrame,
    materialized_campaigns: pl.DataFrame,
    policy: RecoveryPolicy,
    *,
    as_of: datetime,
) -> WhatIf:
    """Decide again under `policy` and compare with the materialized decisions/campaigns."""
    decisions = decide_recovery(fleet, policy, as_of=as_of)
    return WhatIf(
        policy=policy,
        decisions=decisions,
        counts=compare_counts(materialized_decisions, decisions),
        campaigns=compare_campaigns(materialized_campaigns, campaign_health(fleet, policy)),
        changes=changed_devices(materialized_decisions, decisions),
    )


# --- anomaly thresholds ---------------------------------------------------------------------

ANOMALY_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        "hot_temperature_c", "Hot: temperature above", *_bounds("temperature_c"), 1, unit="°C"
    ),
    Threshold("low_battery_pct", "Hot: while battery below", 0, 100, 1, unit="%"),
    Threshold("sag_voltage_v", "Sag: voltage below", *_bounds("battery_voltage_v"), 0.01, unit="V"),
    Threshold("sag_min_battery_pct", "Sag: while battery at least", 0, 100, 1, unit="%"),
    Threshold(
        "signal_collapse_dbm", "Signal collapse below", *_bounds("signal_dbm"), 1, unit="dBm"
    ),
    Threshold("zscore_threshold", "Temperature |z-score| above", 0.1, 10, 0.1),
    Threshold("zscore_window_minutes", "Z-score window", 60, 24 * 60, 15, integer=True, unit="min"),
    Threshold("zscore_min_readings", "Z-score: minimum readings", 3, 96, 1, integer=True),
    Threshold("max_anomaly_rate", "Alert: anomaly rate above", 0.0, 1.0, 0.01),
)
# The anomaly what-if compares against these (the sliders' starting values).
DEFAULT_TIMESERIES = TimeseriesSettings()


def make_timeseries_settings(
    values: Mapping[str, Any], base: TimeseriesSettings = DEFAULT_TIMESERIES
) -> TimeseriesSettings:
    """`base` with (some of) its anomaly thresholds replaced; ValueError names a bad one."""
    known = {t.name for t in ANOMALY_THRESHOLDS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown anomaly threshold(s): {', '.join(unknown)}")
    try:
        return TimeseriesSettings(**{**base.model_dump(), **values})
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ValueError(f"{where}: {first['msg']}") from None


def anomaly_values(settings: TimeseriesSettings) -> dict[str, Any]:
    """The anomaly thresholds of `settings` (a hashable cache key once made a tuple)."""
    return {t.name: getattr(settings, t.name) for t in ANOMALY_THRESHOLDS}


def compare_rule_counts(materialized: pl.DataFrame, what_if: pl.DataFrame) -> pl.DataFrame:
    """Every region (of either side) x rule: materialized and what-if episodes, the change."""
    return compare_by_region(materialized, what_if, "rule", RULES)


def compare_anomaly_rates(
    region_stats: pl.DataFrame, what_if: pl.DataFrame, max_anomaly_rate: float
) -> pl.DataFrame:
    """Per region of the materialized statistics: devices, devices with an episode and the
    anomaly rate under the what-if, whether it alerts (rate above `max_anomaly_rate`, the rule
    of the `anomaly_rate_within_limit` check) and how that compares with the materialized
    verdict: starts alerting, stops alerting, stays alerting or stays quiet."""
    with_episode = what_if.group_by("region").agg(
        pl.col("device_id").n_unique().cast(pl.Int64).alias("devices_with_anomaly")
    )
    return (
        region_stats.select(
            "region",
            "devices",
            pl.col("devices_with_anomaly").alias("devices_with_anomaly_before"),
            pl.col("anomaly_rate").alias("anomaly_rate_before"),
            (pl.col("anomaly_rate") > pl.col("max_anomaly_rate")).alias("alert_before"),
        )
        .join(with_episode, on="region", how="left")
        .with_columns(pl.col("devices_with_anomaly").fill_null(0))
        .with_columns((pl.col("devices_with_anomaly") / pl.col("devices")).alias("anomaly_rate"))
        .with_columns((pl.col("anomaly_rate") > max_anomaly_rate).alias("alert"))
        .with_columns(
            pl.when(pl.col("alert") & ~pl.col("alert_before"))
            .then(pl.lit("starts alerting"))
            .when(~pl.col("alert") & pl.col("alert_before"))
            .then(pl.lit("stops alerting"))
            .when(pl.col("alert"))
            .then(pl.lit("stays alerting"))
            .otherwise(pl.lit("stays quiet"))
            .alias("verdict")
        )
        .select(
            "region",
            "verdict",
            "devices",
            "devices_with_anomaly_before",
            "devices_with_anomaly",
            "anomaly_rate_before",
            "anomaly_rate",
            "alert_before",
            "alert",
        )
        .sort("region")
    )


def episode_changes(materialized: pl.DataFrame, what_if: pl.DataFrame) -> pl.DataFrame:
    """Devices and rules whose number of episodes differs: region, device_id, rule,
    episodes_before, episodes_after, change (positive: the device gains episodes)."""
    keys = ["region", "device_id", "rule"]
    before = materialized.group_by(keys).agg(pl.len().cast(pl.Int64).alias("episodes_before"))
    after = what_if.group_by(keys).agg(pl.len().cast(pl.Int64).alias("episodes_after"))
    return (
        before.join(after, on=keys, how="full", coalesce=True)
        .with_columns(pl.col("episodes_before", "episodes_after").fill_null(0))
        .with_columns((pl.col("episodes_after") - pl.col("episodes_before")).alias("change"))
        .filter(pl.col("change") != 0)
        .sort(keys)
    )


@dataclass(frozen=True)
class AnomalyWhatIf:
    """The episodes of a day under other anomaly thresholds and how they differ."""

    settings: TimeseriesSettings
    episodes: pl.DataFrame  # anomaly_episodes' output, unchanged
    counts: pl.DataFrame  # region, rule, materialized, what_if, change
    regions: pl.DataFrame  # compare_anomaly_rates
    changes: pl.DataFrame  # episode_changes

    def wide_counts(self) -> pl.DataFrame:
        """Region rows, one column per rule with its what-if episodes and one with the change."""
        columns = [c for rule in RULES for c in (rule, f"{rule} change")]
        if self.counts.is_empty():
            return pl.DataFrame(schema={"region": pl.String, **dict.fromkeys(columns, pl.Int64)})
        what_if = self.counts.pivot("rule", index="region", values="what_if")
        change = self.counts.pivot("rule", index="region", values="change").rename(
            {rule: f"{rule} change" for rule in RULES}
        )
        return what_if.join(change, on="region").select("region", *columns).sort("region")

    def rule_totals(self) -> dict[str, int]:
        totals = self.counts.group_by("rule").agg(pl.col("what_if").sum())
        found = dict(totals.iter_rows())
        return {rule: int(found.get(rule, 0)) for rule in RULES}

    @property
    def starting(self) -> list[str]:
        return self.regions.filter(pl.col("verdict") == "starts alerting")["region"].to_list()

    @property
    def stopping(self) -> list[str]:
        return self.regions.filter(pl.col("verdict") == "stops alerting")["region"].to_list()


def anomaly_what_if(
    readings: pl.DataFrame,
    materialized_anomalies: pl.DataFrame,
    materialized_region_stats: pl.DataFrame,
    day: date,
    settings: TimeseriesSettings,
) -> AnomalyWhatIf:
    """Find the day's episodes again under `settings` and compare with the materialized ones."""
    episodes = anomaly_episodes(readings.lazy(), day, settings).collect()
    return AnomalyWhatIf(
        settings=settings,
        episodes=episodes,
        counts=compare_rule_counts(materialized_anomalies, episodes),
        regions=compare_anomaly_rates(
            materialized_region_stats, episodes, settings.max_anomaly_rate
        ),
        changes=episode_changes(materialized_anomalies, episodes),
    )


def materialized_with_other_thresholds(
    materialized_anomalies: pl.DataFrame, settings: TimeseriesSettings = DEFAULT_TIMESERIES
) -> list[str]:
    """The thresholds texts of the materialized episodes that `settings` would not write:
    when not empty, the materialized table was built with other thresholds."""
    expected = {text for _, text in rule_conditions(settings).values()}
    found = materialized_anomalies["thresholds"].unique().sort().to_list()
    return [text for text in found if text not in expected]
