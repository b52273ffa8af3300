"""Outcome simulation: what the fleet looks like once the recovery decisions were applied.

A retry or a rollback works with odds that fall with a weak signal (a retry downloads the
image again) and a low battery (both flash and reboot); deferred, held and triaged devices
wait. Each device's draw is a stable hash of (seed, region, record id), so a device's fate
does not change with the fleet's size or row order, and the same seed gives the same outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from sentinel_assets.contracts import (
    ACTION_OUTCOME,
    ACTION_SUCCEEDED,
    OUTCOME_STATUSES,
    REGIONS,
    UPDATE_STATUSES,
    RecoveryOutcome,
)

OUTCOME_COLUMNS: tuple[str, ...] = tuple(RecoveryOutcome.to_schema().columns)
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class OutcomeOdds:
    """Success odds of the actions that touch a device, and how telemetry bends them."""

    retry: float = 0.9  # a transient failure, retried on a good link with a charged battery
    rollback_written: float = 0.98  # the old image still runs: only the new slot is dropped
    rollback_trial_boot: float = 0.9  # needs a reboot into the old slot
    # Odds halve at this signal and fall off over about `signal_softness_db` around it.
    weak_signal_dbm: float = -108.0
    signal_softness_db: float = 3.0
    # Odds halve at this battery level (flashing on an empty cell fails or bricks).
    low_battery_pct: float = 12.0
    battery_softness_pct: float = 3.0

    def __post_init__(self) -> None:
        shares = ("retry", "rollback_written", "rollback_trial_boot")
        bad = [name for name in shares if not 0.0 <= getattr(self, name) <= 1.0]
        bad += [f.name for f in fields(self) if "softness" in f.name and getattr(self, f.name) <= 0]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid outcome odds: {values} (shares within [0, 1], softness > 0)")


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


def device_draws(region: pl.Series, record_id: pl.Series, seed: int) -> pl.Series:
    """A uniform draw in [0, 1) per device, fixed by (seed, region, record id) alone."""
    region_idx = region.replace_strict(
        list(REGIONS), list(range(len(REGIONS))), return_dtype=pl.UInt64
    )
    keyed = (record_id.cast(pl.UInt64).to_numpy() << np.uint64(8)) | region_idx.to_numpy()
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
        decisions.select("region", "record_id", "action", "reason_code"),
        on=["region", "record_id"],
        how="left",
        maintain_order="left",
    )
    applied = applied.with_columns(
        success_probability(odds).alias("success_probability"),
        device_draws(applied["region"], applied["record_id"], seed),
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
