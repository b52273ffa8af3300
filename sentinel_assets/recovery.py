"""Recovery decisions: what to do about each device the campaign left unhealthy, and why.

Rules are ordered guards in one `when/then` chain, so each device gets exactly one action and
the first guard that applies names the reason an operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from sentinel_assets.contracts import ACTIONS, BOUNDS, RecoveryDecision

DECISION_COLUMNS: tuple[str, ...] = tuple(RecoveryDecision.to_schema().columns)


@dataclass(frozen=True)
class RecoveryPolicy:
    """Thresholds of the recovery policy; defaults follow common OTA practice."""

    # Rolling back re-flashes the old slot: a nearly empty or hot device can brick doing it.
    min_rollback_battery_pct: float = 30.0
    min_rollback_voltage_v: float = 3.55
    max_rollback_temperature_c: float = 60.0
    # A retry downloads and installs again (Android's recovery asks for 20 % battery).
    min_retry_battery_pct: float = 20.0
    max_retries: int = 3
    min_signal_dbm: float = -110.0  # below this a download rarely finishes
    retriable_failure_kinds: tuple[str, ...] = ("download_timeout", "connection_lost")
    retry_backoff_minutes: float = 30.0  # first retry after this, doubling per earlier attempt
    # A device silent for longer than this is not acted on blindly.
    stale_after_hours: float = 72.0
    # Campaign abort: halt the region once this share of attempted updates failed ...
    abort_failure_rate: float = 0.25
    # ... but only after this many devices attempted, so one early failure cannot stop it.
    abort_min_attempted: int = 100

    def __post_init__(self) -> None:
        checks = {
            "min_rollback_battery_pct": 0 <= self.min_rollback_battery_pct <= 100,
            "min_retry_battery_pct": 0 <= self.min_retry_battery_pct <= 100,
            "min_rollback_voltage_v": BOUNDS["battery_voltage_v"].low
            <= self.min_rollback_voltage_v
            <= BOUNDS["battery_voltage_v"].high,
            "max_rollback_temperature_c": BOUNDS["temperature_c"].low
            <= self.max_rollback_temperature_c
            <= BOUNDS["temperature_c"].high,
            "max_retries": 0 <= self.max_retries <= BOUNDS["retry_count"].high,
            "min_signal_dbm": BOUNDS["signal_dbm"].low
            <= self.min_signal_dbm
            <= BOUNDS["signal_dbm"].high,
            "retry_backoff_minutes": self.retry_backoff_minutes > 0,
            "stale_after_hours": self.stale_after_hours > 0,
            "abort_failure_rate": 0 < self.abort_failure_rate <= 1,
            "abort_min_attempted": self.abort_min_attempted >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid recovery policy: {values}")


def campaign_health(fleet: pl.DataFrame, policy: RecoveryPolicy) -> pl.DataFrame:
    """Per region: how many attempted, how many failed, and whether the campaign is halted.

    Attempted = success + partial + failed; failures = partial + failed, like an abort
    threshold counting executions that did not succeed.
    """
    attempted = pl.col("update_status") != "pending"
    failed = pl.col("update_status").is_in(["partial", "failed"])
    return (
        fleet.group_by("region")
        .agg(attempted.sum().alias("attempted"), failed.sum().alias("failures"))
        .with_columns(
            (pl.col("failures") / pl.col("attempted")).fill_nan(0.0).alias("failure_rate"),
        )
        .with_columns(
            (
                (pl.col("attempted") >= policy.abort_min_attempted)
                & (pl.col("failure_rate") >= policy.abort_failure_rate)
            ).alias("halted")
        )
        .sort("region")
    )


def _fmt(template: str, *columns: str) -> pl.Expr:
    return pl.format(template, *(pl.col(c) for c in columns))


def _guards(p: RecoveryPolicy, as_of: datetime) -> list[tuple[pl.Expr, str, pl.Expr]]:
    """Ordered (condition, action, reason); the first condition that holds decides."""
    status, kind = pl.col("update_status"), pl.col("failure_kind")
    battery, volts = pl.col("battery_pct"), pl.col("battery_voltage_v")
    retries = pl.col("retry_count")
    partial, failed = status == "partial", status == "failed"
    hours_silent = (pl.lit(as_of) - pl.col("last_seen_at")).dt.total_minutes() / 60
    return [
        (
            status == "pending",
            "hold",
            pl.lit("campaign halted in region: failure rate passed the abort threshold"),
        ),
        (
            hours_silent > p.stale_after_hours,
            "manual_triage",
            pl.format(
                "not seen for {} h: confirm the device state before acting",
                hours_silent.round(0).cast(pl.Int64),
            ),
        ),
        (
            partial & ((battery < p.min_rollback_battery_pct) | (volts < p.min_rollback_voltage_v)),
            "defer",
            _fmt(
                "battery {} % / {} V too low to survive a rollback: charge first",
                "battery_pct",
                "battery_voltage_v",
            ),
        ),
        (
            partial & (pl.col("temperature_c") > p.max_rollback_temperature_c),
            "defer",
            _fmt("device at {} °C: cool down before rolling back", "temperature_c"),
        ),
        (
            partial,
            "rollback",
            _fmt("uncommitted image {}: roll back to {}", "firmware_to", "firmware_from"),
        ),
        (
            failed & ~kind.is_in(list(p.retriable_failure_kinds)),
            "manual_triage",
            _fmt("{} is not retriable: needs a person", "failure_kind"),
        ),
        (
            failed & (retries >= p.max_retries),
            "manual_triage",
            pl.format("retry limit reached ({} of {} attempts)", retries, pl.lit(p.max_retries)),
        ),
        (
            failed & (pl.col("signal_dbm") < p.min_signal_dbm),
            "manual_triage",
            _fmt("signal {} dBm too weak to download the image", "signal_dbm"),
        ),
        (
            failed & (battery < p.min_retry_battery_pct),
            "defer",
            _fmt("battery {} % too low to install: charge first", "battery_pct"),
        ),
        (
            failed,
            "retry",
            pl.format("{} (attempt {} of {})", kind, retries + 1, pl.lit(p.max_retries)),
        ),
    ]


def _first_match(guards: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    (condition, value), *rest = guards
    chain = pl.when(condition).then(value)
    for condition, value in rest:
        chain = chain.when(condition).then(value)
    return chain


def decide_recovery(
    fleet: pl.DataFrame, policy: RecoveryPolicy, *, as_of: datetime
) -> pl.DataFrame:
    """One decision per device that is not healthy: success needs nothing, and pending is
    held only when its region's campaign is halted."""
    guards = _guards(policy, as_of)
    retries = pl.col("retry_count").cast(pl.Float64)
    backoff = pl.duration(minutes=policy.retry_backoff_minutes * pl.lit(2.0).pow(retries))
    status = pl.col("update_status")
    unhealthy = status.is_in(["partial", "failed"]) | ((status == "pending") & pl.col("halted"))
    halted = campaign_health(fleet, policy).select("region", "halted")
    return (
        fleet.join(halted, on="region", how="left")
        .filter(unhealthy)
        .with_columns(
            _first_match([(c, pl.lit(a)) for c, a, _ in guards]).alias("action"),
            _first_match([(c, r) for c, _, r in guards]).alias("reason"),
        )
        .with_columns(
            pl.when(pl.col("action") == "retry")
            .then(pl.lit(as_of) + backoff)
            .dt.cast_time_unit("us")
            .alias("next_attempt_at")
        )
        .select(DECISION_COLUMNS)
    )


def action_counts(decisions: pl.DataFrame) -> dict[str, int]:
    """Number of decisions per action, every action listed."""
    counts = dict(decisions.group_by("action").len().iter_rows())
    return {action: counts.get(action, 0) for action in ACTIONS}
