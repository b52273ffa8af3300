"""Outcome simulation: what the fleet looks like once the recovery decisions were applied.

A retry or a rollback works with odds that fall with a weak signal (a retry downloads the
image again) and a low battery (both flash and reboot); deferred, held and triaged devices
wait. Each device's draw is a stable hash of (seed, record id), so a device's fate
does not change with the fleet's size or row order, and the same seed gives the same outcome.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sentinel_assets.contracts import (
    ACTION_OUTCOME,
    ACTION_SUCCEEDED,
    OUTCOME_STATUSES,
    RECORD_ID,
    UPDATE_STATUSES,
    RecoveryOutcome,
)

OUTCOME_COLUMNS: tuple[str, ...] = tuple(RecoveryOutcome.to_schema().columns)
_MASK64 = (1 << 64) - 1


class OutcomeOdds(BaseModel):
    """Success odds of the actions that touch a device, and how telemetry bends them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A transient failure, retried on a good link with a charged battery.
    retry: float = Field(default=0.9, ge=0, le=1)
    # The old image still runs: only the new slot is dropped.
    rollback_written: float = Field(default=0.98, ge=0, le=1)
    rollback_trial_boot: float = Field(default=0.9, ge=0, le=1)  # needs a reboot into the old slot
    # Odds halve at this signal and fall off over about `signal_softness_db` around it.
    weak_signal_dbm: float = -108.0
    signal_softness_db: float = Field(default=3.0, gt=0)
    # Odds halve at this battery level (flashing on an empty cell fails or bricks).
    low_battery_pct: float = 12.0
    battery_softness_pct: float = Field(default=3.0, gt=0)


def _logistic(value: pl.Expr, midpoint: float, softness: float) -> pl.Expr:
    return 1.0 / (1.0 + ((pl.lit(midpoint) - value) / softness).exp())


def success_probability(odds: OutcomeOdds) -> pl.Expr:
    """Odds that the device's action works; null for actions that do not touch the device."""
    battery = _logistic(pl.col("battery_pct"), odds.low_battery_pct, odds.battery_softness_pct)
    signal = _logistic(pl.col("signal_dbm"), odds.weak_signal_dbm, odds.signal_softness_db)
    rollback = (
        pl.when(pl.col("commit_state") == "trial_boot")
        .then(pl.lit(odds.rollback_trial_boot))
        .otherwise(pl.lit(odds.rollback_written))
    )
    action = pl.col("action")
    return (
        pl.when(action == "retry")
        .then(odds.retry * signal * battery)
        .when(action == "rollback")
        .then(rollback * battery)
    )


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (SplitMix64 finalizer), vectorized."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def device_draws(record_id: pl.Series, seed: int) -> pl.Series:
    """A uniform draw in [0, 1) per device, fixed by (seed, record id) alone: record ids are
    unique across the warehouse, so no two devices share a draw sequence."""
    keyed = record_id.cast(pl.UInt64).to_numpy()
    with np.errstate(over="ignore"):
        salted = _splitmix64(np.full(len(keyed), seed & _MASK64, dtype=np.uint64)) ^ keyed
        hashed = _splitmix64(salted)
    return pl.Series("draw", (hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def simulate_outcomes(
    fleet: pl.DataFrame, decisions: pl.DataFrame, *, seed: int, odds: OutcomeOdds | None = None
) -> pl.DataFrame:
    """Every device of the fleet with its status before and after recovery."""
    odds = odds or OutcomeOdds()
    applied = fleet.join(
        decisions.select(RECORD_ID, "action", "reason_code"),
        on=RECORD_ID,
        how="left",
        maintain_order="left",
    )
    applied = applied.with_columns(
        success_probability(odds).alias("success_probability"),
        device_draws(applied[RECORD_ID], seed),
    )
    action = pl.col("action")
    worked = pl.col("draw") < pl.col("success_probability")
    attempted = action.replace_strict(ACTION_SUCCEEDED, default=None)
    return applied.with_columns(
        pl.col("update_status").alias("status_before"),
        pl.when(action.is_null())
        .then(pl.col("update_status"))
        .when(attempted.is_not_null())
        .then(pl.when(worked).then(attempted).otherwise(pl.lit("still_failed")))
        .otherwise(action.replace_strict(ACTION_OUTCOME, default=None))
        .alias("status_after"),
    ).select(OUTCOME_COLUMNS)


def status_counts(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Devices per (phase, status), before and after recovery, in a fixed status order."""
    order = list(dict.fromkeys((*UPDATE_STATUSES, *OUTCOME_STATUSES)))
    before = (
        outcomes.group_by(status="status_before")
        .len("devices")
        .with_columns(phase=pl.lit("before"))
    )
    after = (
        outcomes.group_by(status="status_after").len("devices").with_columns(phase=pl.lit("after"))
    )
    return (
        pl.concat([before, after])
        .with_columns(pl.col("devices").cast(pl.Int64))
        .sort(pl.col("phase") == "after", pl.col("status").replace_strict(order, range(len(order))))
        .select("phase", "status", "devices")
    )


def status_summary(counts: pl.DataFrame) -> dict[str, dict[str, int]]:
    """`status_counts` as {"before": {status: devices}, "after": {...}}, for asset metadata."""
    return {
        phase: dict(counts.filter(pl.col("phase") == phase).select("status", "devices").iter_rows())
        for phase in ("before", "after")
    }
