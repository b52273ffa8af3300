"""Recovery decisions: what to do about each device the campaign left unhealthy, and why.

The policy follows what OTA fleet managers do: retry only transient failures, a bounded number
of times with exponential backoff (AWS IoT Jobs retry config); roll an uncommitted A/B image
back only when the device can survive it, and leave a new image on trial to its boot-health
watchdog (Mender, greenboot); never act blindly on a device that stopped reporting; and halt a
region's campaign once enough attempted updates failed (AWS IoT Jobs abort config, hawkBit
error condition), holding its pending updates.

Rules are ordered guards in one `when/then` chain, so each device gets exactly one action and
the first guard that applies names the reason an operator reads and the code reports group by.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import polars as pl

from sentinel_assets.contracts import (
    ACTIONS,
    BOUNDS,
    FAILURE_KINDS,
    CampaignStatus,
    RecoveryDecision,
)

DECISION_COLUMNS: tuple[str, ...] = tuple(RecoveryDecision.to_schema().columns)
CAMPAIGN_COLUMNS: tuple[str, ...] = tuple(CampaignStatus.to_schema().columns)


@dataclass(frozen=True)
class RecoveryPolicy:
    """Thresholds of the recovery policy; defaults follow common OTA practice."""

    # Rolling back re-flashes the old slot: a nearly empty or hot device can brick doing it.
    # At the minimum itself a rollback goes ahead; below it the device is deferred.
    min_rollback_battery_pct: float = 30.0
    min_rollback_voltage_v: float = 3.55  # Li-ion is ~3.3 V empty, ~4.2 V full
    max_rollback_temperature_c: float = 60.0
    # A new image on trial gets this many boots from its watchdog (greenboot tries 3) before
    # it should fall back on its own; a device past it is stuck and is rolled back.
    max_boot_attempts: int = 3
    # A retry downloads and installs again (Android's recovery asks for 20 % battery).
    min_retry_battery_pct: float = 20.0
    max_retries: int = 3  # AWS IoT Jobs allows 0-10 retries per criterion
    min_signal_dbm: float = -110.0  # below this a download rarely finishes
    # Transient failures are retried; a verification failure or a full disk needs a person.
    retriable_failure_kinds: tuple[str, ...] = ("download_timeout", "connection_lost")
    retry_backoff_minutes: float = 30.0  # first retry after this, doubling per earlier attempt
    retry_backoff_max_minutes: float = 24 * 60.0  # at most one attempt a day: no retry storms
    # A device silent for longer than this is not acted on blindly.
    stale_after_hours: float = 72.0
    # Campaign abort: halt the region once this share of attempted updates failed (the fleet's
    # mid-campaign baseline is ~23 %, partials included) ...
    abort_failure_rate: float = 0.30
    # ... but only after this many devices attempted, so one early failure cannot stop it.
    abort_min_attempted: int = 100

    def __post_init__(self) -> None:
        volts, temp, signal = (
            BOUNDS["battery_voltage_v"],
            BOUNDS["temperature_c"],
            BOUNDS["signal_dbm"],
        )
        checks = {
            "min_rollback_battery_pct": (0 <= self.min_rollback_battery_pct <= 100, "0..100"),
            "min_retry_battery_pct": (0 <= self.min_retry_battery_pct <= 100, "0..100"),
            "min_rollback_voltage_v": (
                volts.low <= self.min_rollback_voltage_v <= volts.high,
                f"{volts.low}..{volts.high} V",
            ),
            "max_rollback_temperature_c": (
                temp.low <= self.max_rollback_temperature_c <= temp.high,
                f"{temp.low}..{temp.high} °C",
            ),
            "max_boot_attempts": (
                1 <= self.max_boot_attempts <= BOUNDS["boot_attempts"].high,
                f"1..{BOUNDS['boot_attempts'].high:g}",
            ),
            "max_retries": (0 <= self.max_retries <= 10, "0..10"),
            "min_signal_dbm": (
                signal.low <= self.min_signal_dbm <= signal.high,
                f"{signal.low}..{signal.high} dBm",
            ),
            "retry_backoff_minutes": (self.retry_backoff_minutes > 0, "> 0"),
            "retry_backoff_max_minutes": (
                self.retry_backoff_max_minutes >= self.retry_backoff_minutes,
                ">= retry_backoff_minutes",
            ),
            "stale_after_hours": (self.stale_after_hours > 0, "> 0"),
            "abort_failure_rate": (0 < self.abort_failure_rate <= 1, "a share in (0, 1]"),
            "abort_min_attempted": (self.abort_min_attempted >= 1, ">= 1"),
        }
        bad = [
            f"{name}={getattr(self, name)!r} (expected {rule})"
            for name, (ok, rule) in checks.items()
            if not ok
        ]
        unknown = sorted(set(self.retriable_failure_kinds) - set(FAILURE_KINDS))
        if unknown:
            bad.append(
                f"retriable_failure_kinds has unknown kind(s) {unknown} "
                f"(known: {', '.join(FAILURE_KINDS)})"
            )
        if bad:
            raise ValueError(f"invalid recovery policy: {'; '.join(bad)}")


def campaign_health(fleet: pl.DataFrame, policy: RecoveryPolicy) -> pl.DataFrame:
    """Per region: how many attempted, how many failed, and whether the campaign is halted.

    Attempted = success + partial + failed; failures = partial + failed, like an abort
    threshold counting executions that did not succeed. Halts at the threshold itself.
    """
    attempted = pl.col("update_status") != "pending"
    failed = pl.col("update_status").is_in(["partial", "failed"])
    return (
        fleet.group_by("region")
        .agg(
            pl.len().cast(pl.Int64).alias("devices"),
            attempted.sum().cast(pl.Int64).alias("attempted"),
            failed.sum().cast(pl.Int64).alias("failures"),
        )
        .with_columns(
            (pl.col("failures") / pl.col("attempted")).fill_nan(0.0).alias("failure_rate"),
            pl.lit(float(policy.abort_failure_rate)).alias("abort_failure_rate"),
            pl.lit(policy.abort_min_attempted, dtype=pl.Int64).alias("abort_min_attempted"),
        )
        .with_columns(
            (
                (pl.col("attempted") >= pl.col("abort_min_attempted"))
                & (pl.col("failure_rate") >= pl.col("abort_failure_rate"))
            ).alias("halted")
        )
        .select(CAMPAIGN_COLUMNS)
        .sort("region")
    )


class Guard(NamedTuple):
    """One rule of the policy: when it applies, what to do, and how to say why."""

    when: pl.Expr
    action: str
    code: str
    reason: pl.Expr


def _fmt(template: str, *columns: str | pl.Expr) -> pl.Expr:
    return pl.format(template, *(pl.col(c) if isinstance(c, str) else c for c in columns))


def _pct(column: str) -> pl.Expr:
    return (pl.col(column) * 100).round(1)


def _num(value: float) -> pl.Expr:
    """A policy constant as text, without a trailing `.0`."""
    return pl.lit(f"{value:g}")


def _guards(p: RecoveryPolicy, as_of: datetime) -> list[Guard]:
    """The policy as ordered guards; the first that holds decides."""
    status, kind = pl.col("update_status"), pl.col("failure_kind")
    battery, volts = pl.col("battery_pct"), pl.col("battery_voltage_v")
    retries, boots = pl.col("retry_count"), pl.col("boot_attempts")
    partial, failed = status == "partial", status == "failed"
    on_trial = pl.col("commit_state") == "trial_boot"
    hours_silent = (pl.lit(as_of) - pl.col("last_seen_at")).dt.total_minutes() / 60
    halt = _fmt(
        "campaign halted in {}: {} of {} attempted updates failed ({} % >= {} %)",
        "region",
        "failures",
        "attempted",
        _pct("failure_rate"),
        _pct("abort_failure_rate"),
    )
    return [
        Guard(status == "pending", "hold", "campaign_halted", halt + pl.lit(": update held")),
        Guard(
            hours_silent > p.stale_after_hours,
            "manual_triage",
            "stale_device",
            _fmt(
                "not seen for {} h (limit {} h): confirm the device state before acting",
                hours_silent.round(0).cast(pl.Int64),
                _num(p.stale_after_hours),
            ),
        ),
        Guard(
            partial & on_trial & (boots < p.max_boot_attempts),
            "defer",
            "boot_check_running",
            _fmt(
                "image {} on trial (boot {} of {}): let its boot-health check commit it or "
                "fall back",
                "firmware_to",
                "boot_attempts",
                _num(p.max_boot_attempts),
            ),
        ),
        Guard(
            partial & ((battery < p.min_rollback_battery_pct) | (volts < p.min_rollback_voltage_v)),
            "defer",
            "low_battery",
            _fmt(
                "battery {} % / {} V below {} % / {} V needed to survive a rollback: charge first",
                "battery_pct",
                "battery_voltage_v",
                _num(p.min_rollback_battery_pct),
                _num(p.min_rollback_voltage_v),
            ),
        ),
        Guard(
            partial & (pl.col("temperature_c") > p.max_rollback_temperature_c),
            "defer",
            "over_temperature",
            _fmt(
                "device at {} °C (limit {} °C): cool down before rolling back",
                "temperature_c",
                _num(p.max_rollback_temperature_c),
            ),
        ),
        Guard(
            partial & on_trial,
            "rollback",
            "boot_failed",
            _fmt(
                "image {} booted {} times without committing: roll back to {}",
                "firmware_to",
                "boot_attempts",
                "firmware_from",
            ),
        ),
        Guard(
            partial,
            "rollback",
            "uncommitted_image",
            _fmt("uncommitted image {}: roll back to {}", "firmware_to", "firmware_from"),
        ),
        Guard(
            failed & ~kind.is_in(list(p.retriable_failure_kinds)),
            "manual_triage",
            "not_retriable",
            _fmt("{} is not retriable: needs a person", "failure_kind"),
        ),
        Guard(
            failed & (retries >= p.max_retries),
            "manual_triage",
            "retry_limit",
            _fmt("retry limit reached: {} retries done (limit {})", retries, _num(p.max_retries)),
        ),
        Guard(
            failed & (pl.col("signal_dbm") < p.min_signal_dbm),
            "manual_triage",
            "weak_signal",
            _fmt(
                "signal {} dBm below {} dBm: too weak to download the image",
                "signal_dbm",
                _num(p.min_signal_dbm),
            ),
        ),
        # Aborting a job stops new attempts everywhere in the region, retries included.
        Guard(failed & pl.col("halted"), "hold", "campaign_halted", halt + pl.lit(": retry held")),
        Guard(
            failed & (battery < p.min_retry_battery_pct),
            "defer",
            "low_battery",
            _fmt(
                "battery {} % below {} % needed to install: charge first",
                "battery_pct",
                _num(p.min_retry_battery_pct),
            ),
        ),
        Guard(
            failed,
            "retry",
            "transient_failure",
            _fmt("{}: retry {} of {}", kind, retries + 1, _num(p.max_retries)),
        ),
    ]


def _first_match(pairs: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    (condition, value), *rest = pairs
    chain = pl.when(condition).then(value)
    for condition, value in rest:
        chain = chain.when(condition).then(value)
    return chain


def retry_backoff(policy: RecoveryPolicy) -> pl.Expr:
    """Wait before the next attempt: doubles with each earlier retry, capped at the maximum."""
    minutes = policy.retry_backoff_minutes * pl.lit(2.0).pow(pl.col("retry_count").cast(pl.Float64))
    capped = pl.min_horizontal(minutes, pl.lit(policy.retry_backoff_max_minutes))
    return pl.duration(seconds=(capped * 60).round(0).cast(pl.Int64))


def decide_recovery(
    fleet: pl.DataFrame, policy: RecoveryPolicy, *, as_of: datetime
) -> pl.DataFrame:
    """One decision per device that is not healthy: success needs nothing, and pending is
    held only when its region's campaign is halted."""
    guards = _guards(policy, as_of)
    status = pl.col("update_status")
    unhealthy = status.is_in(["partial", "failed"]) | ((status == "pending") & pl.col("halted"))
    decided = (
        # Success is never unhealthy: drop it before the join (the health uses every device).
        fleet.filter(status.is_in(["partial", "failed", "pending"]))
        .join(campaign_health(fleet, policy), on="region", how="left")
        .filter(unhealthy)
        .with_row_index("__row")
        .with_columns(
            _first_match([(g.when, pl.lit(i)) for i, g in enumerate(guards)]).alias("__guard")
        )
    )
    # The deciding guard writes its reason for its own rows only: one `when/then` chain over
    # all the reasons would format every guard's text for every row and keep one of them.
    inputs = sorted({name for g in guards for name in g.reason.meta.root_names()})
    by_guard = decided.select("__row", "__guard", *inputs).partition_by(
        "__guard", as_dict=True, maintain_order=True
    )
    reasons = pl.concat(
        [
            part.select(
                "__row",
                (pl.lit(None) if i is None else guards[i].reason).cast(pl.String).alias("reason"),
            )
            for (i,), part in by_guard.items()
        ]
        or [pl.DataFrame(schema={"__row": pl.UInt32, "reason": pl.String})]
    ).sort("__row")
    guard = pl.col("__guard")
    return (
        decided.with_columns(
            guard.replace_strict(dict(enumerate(g.action for g in guards)), default=None)
            .cast(pl.String)
            .alias("action"),
            guard.replace_strict(dict(enumerate(g.code for g in guards)), default=None)
            .cast(pl.String)
            .alias("reason_code"),
            reasons["reason"],
        )
        .with_columns(
            pl.when(pl.col("action") == "retry")
            .then(pl.lit(as_of) + retry_backoff(policy))
            .dt.cast_time_unit("us")
            .alias("next_attempt_at")
        )
        .select(DECISION_COLUMNS)
    )


def action_counts(decisions: pl.DataFrame) -> dict[str, int]:
    """Number of decisions per action, every action listed."""
    counts = dict(decisions.group_by("action").len().iter_rows())
    return {action: counts.get(action, 0) for action in ACTIONS}


def reason_code_counts(decisions: pl.DataFrame) -> dict[str, int]:
    """Number of decisions per reason code, only the codes that occur, most frequent first."""
    counts = (
        decisions.group_by("reason_code").len().sort("len", "reason_code", descending=[True, False])
    )
    return dict(counts.iter_rows())
