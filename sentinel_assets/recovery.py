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

from datetime import UTC, datetime
from typing import Annotated, NamedTuple, Self

import polars as pl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sentinel_assets.contracts import (
    ACTIONS,
    BOUNDS,
    FAILURE_KINDS,
    PARTITION_KEY,
    UNHEALTHY_STATUSES,
    CampaignStatus,
    RecoveryDecision,
)

# The recent trend `decide_recovery` may be given: the 24 h drain of `device_timeseries`.
DRAIN_COLUMN = "battery_drain_pct_per_h"
DECISION_COLUMNS: tuple[str, ...] = tuple(RecoveryDecision.to_schema().columns)
CAMPAIGN_COLUMNS: tuple[str, ...] = tuple(CampaignStatus.to_schema().columns)


# The snapshot time the campaign is seen at: decisions measure a device's silence from it.
DEFAULT_AS_OF = "2026-11-01T00:00:00+00:00"


def parse_as_of(value: str) -> datetime:
    """A snapshot time, ISO 8601 with a UTC offset, as UTC; anything else is a ValueError
    that quotes it."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"as_of must be an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"as_of must carry a UTC offset, got {value!r}")
    return parsed.astimezone(UTC)


def _known_failure_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - set(FAILURE_KINDS))
    if unknown:
        raise ValueError(f"unknown failure kind(s) {unknown}; known: {', '.join(FAILURE_KINDS)}")
    return kinds


_VOLTS, _TEMP, _SIGNAL = BOUNDS["battery_voltage_v"], BOUNDS["temperature_c"], BOUNDS["signal_dbm"]


class RecoveryPolicy(BaseModel):
    """Thresholds of the recovery policy; defaults follow common OTA practice. This model is
    where they are stated and validated, once: the run config's `settings.recovery` is it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rolling back re-flashes the old slot: a nearly empty or hot device can brick doing it.
    # At the minimum itself a rollback goes ahead; below it the device is deferred.
    min_rollback_battery_pct: float = Field(
        default=30.0,
        ge=0,
        le=100,
        description="A partial device rolls back only at or above this battery %; else defer.",
    )
    min_rollback_voltage_v: float = Field(
        default=3.55,
        ge=_VOLTS.low,
        le=_VOLTS.high,
        description="... and at or above this cell voltage (Li-ion: ~3.3 V empty, 4.2 V full).",
    )
    max_rollback_temperature_c: float = Field(
        default=60.0,
        ge=_TEMP.low,
        le=_TEMP.high,
        description="Above this device temperature a rollback is deferred (cool down first).",
    )
    max_boot_attempts: int = Field(
        default=3,
        ge=1,
        le=int(BOUNDS["boot_attempts"].high),
        description="Boots a new image on trial gets from its watchdog before it is rolled "
        "back (greenboot: 3); until then the device is left to commit or fall back itself.",
    )
    min_retry_battery_pct: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="A failed device is retried only at or above this battery % (Android's "
        "recovery asks for 20 %); else defer.",
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries per device (0-10, like AWS IoT Jobs); reached -> manual triage.",
    )
    min_signal_dbm: float = Field(
        default=-110.0,
        ge=_SIGNAL.low,
        le=_SIGNAL.high,
        description="Below this signal a retry is pointless (the download will not finish).",
    )
    retriable_failure_kinds: Annotated[list[str], AfterValidator(_known_failure_kinds)] = Field(
        default=["download_timeout", "connection_lost"],
        description="Failure kinds worth retrying (transient); any other kind goes to manual "
        f"triage. Known kinds: {', '.join(FAILURE_KINDS)}.",
    )
    retry_backoff_minutes: float = Field(
        default=30.0,
        gt=0,
        description="Wait before a first retry; doubles with each earlier retry.",
    )
    retry_backoff_max_minutes: float = Field(
        default=24 * 60.0,
        gt=0,
        description="Longest wait between retries (default one day: no retry storms).",
    )
    stale_after_hours: float = Field(
        default=72.0,
        gt=0,
        description="A device silent for longer is sent to triage, not acted on blindly.",
    )
    # The fleet's mid-campaign baseline is ~23 % failed or partial.
    abort_failure_rate: float = Field(
        default=0.30,
        gt=0,
        le=1,
        description="Halt a region's campaign when this share of attempted updates failed ...",
    )
    abort_min_attempted: int = Field(
        default=100,
        ge=1,
        description="... once at least this many devices attempted the update (so one early "
        "failure cannot stop it).",
    )

    # Only when a time series exists (`decide_recovery(trend=...)`); without one nothing changes.
    max_battery_drain_pct_per_h: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="A device whose battery fell faster than this (% per hour, least-squares "
        "over the last 24 h of readings) is deferred even above the battery guards.",
    )

    @model_validator(mode="after")
    def _backoff_cap_not_below_first_wait(self) -> Self:
        if self.retry_backoff_max_minutes < self.retry_backoff_minutes:
            raise ValueError(
                f"retry_backoff_max_minutes ({self.retry_backoff_max_minutes:g}) must be >= "
                f"retry_backoff_minutes ({self.retry_backoff_minutes:g})"
            )
        return self


def campaign_health(fleet: pl.DataFrame, policy: RecoveryPolicy) -> pl.DataFrame:
    """Per region: how many attempted, how many failed, and whether the campaign is halted.

    Attempted = success + partial + failed; failures = partial + failed, like an abort
    threshold counting executions that did not succeed. Halts at the threshold itself.
    """
    attempted = pl.col("update_status") != "pending"
    failed = pl.col("update_status").is_in(UNHEALTHY_STATUSES)
    return (
        fleet.group_by(PARTITION_KEY, "region")
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
    draining = pl.col(DRAIN_COLUMN) > p.max_battery_drain_pct_per_h
    draining_reason = _fmt(
        "battery draining {} %/h (limit {} %/h): charge first",
        pl.col(DRAIN_COLUMN).round(1),
        _num(p.max_battery_drain_pct_per_h),
    )
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
            partial & draining,
            "defer",
            "battery_draining",
            draining_reason,
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
        Guard(failed & draining, "defer", "battery_draining", draining_reason),
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
    fleet: pl.DataFrame,
    policy: RecoveryPolicy,
    *,
    as_of: datetime,
    campaign: pl.DataFrame | None = None,
    trend: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One decision per device that is not healthy: success needs nothing, and pending is
    held only when its region's campaign is halted. `campaign` is the regions' health
    (`campaign_health`), computed from the fleet when not given. `trend` (optional: region,
    device_id, battery_drain_pct_per_h) defers devices draining faster than the policy's
    limit; without it, or for a device it does not list, the static guards alone decide."""
    if campaign is None:
        campaign = campaign_health(fleet, policy)
    if trend is None:
        fleet = fleet.with_columns(pl.lit(None, pl.Float64).alias(DRAIN_COLUMN))
    else:
        drain = trend.select("region", "device_id", pl.col(DRAIN_COLUMN).cast(pl.Float64))
        fleet = fleet.join(drain, on=["region", "device_id"], how="left")
    guards = _guards(policy, as_of)
    status = pl.col("update_status")
    unhealthy = status.is_in(UNHEALTHY_STATUSES) | ((status == "pending") & pl.col("halted"))
    health = campaign.select("region", *(c for c in campaign.columns if c not in fleet.columns))
    decided = (
        # Success is never unhealthy: drop it before the join (the health uses every device).
        fleet.filter(status.is_in([*UNHEALTHY_STATUSES, "pending"]))
        .join(health, on="region", how="left")
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
