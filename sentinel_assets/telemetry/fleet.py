"""The fleet from telemetry: each device as its latest event (as of the snapshot) shows it.

`raw_fleet` with `source: landing` is `fleet_from_events(...)`: per device of the region, the
event with the greatest `ts` not after `as_of` (ties: the greatest `record_id`), shaped like
`contracts.FleetRecord`, `last_seen_at` being that event's `ts`. A device whose latest event
cannot make a trustworthy fleet record (a V1 agent sends no battery voltage, failure kind or
boot count; no site or board revision was reported) is not invented into one: it is returned
in `excluded` with the fleet contract's reason codes (`battery_voltage_v:missing`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from sentinel_assets.contracts import (
    FLEET_COLUMNS,
    FLEET_DTYPES,
    FLEET_SCHEMA,
    PARTITION_KEY,
    RECORD_ID,
    first_record_id,
)
from sentinel_assets.validation import row_rules


@dataclass(frozen=True)
class FleetSnapshot:
    fleet: pl.DataFrame  # satisfies contracts.FleetRecord
    excluded: pl.DataFrame  # device_id, reasons: devices whose latest event is incomplete


def latest_events(events: pl.LazyFrame, region: str, as_of: datetime) -> pl.DataFrame:
    """The latest event per device of the region at or before `as_of`, sorted by device."""
    return (
        events.filter(pl.col("region") == region, pl.col("ts") <= as_of)
        .group_by("device_id")
        .agg(pl.all().sort_by("ts", "record_id").last())
        .collect()
        .sort("device_id")
    )


def fleet_from_events(events: pl.LazyFrame, region: str, as_of: datetime) -> FleetSnapshot:
    latest = latest_events(events, region, as_of)
    # The region's devices numbered in device-id order: unique record ids within the region's
    # span (contracts.RECORD_ID), the same as the generator's for simulated device ids.
    keyed = latest.with_columns(
        (first_record_id(region) + pl.int_range(pl.len(), dtype=pl.Int64)).alias(RECORD_ID),
        pl.lit(region).alias(PARTITION_KEY),
        pl.col("ts").alias("last_seen_at"),
    ).select([pl.col(c).cast(FLEET_DTYPES[c]) for c in FLEET_COLUMNS])
    rules = [rule for rule in row_rules(FLEET_SCHEMA) if rule.rule != "duplicate"]
    reasons = pl.concat_list(
        [pl.when(rule.violated).then(pl.lit(rule.code)) for rule in rules]
    ).list.drop_nulls()
    checked = keyed.with_columns(reasons.alias("reasons"))
    ok = pl.col("reasons").list.len() == 0
    return FleetSnapshot(
        fleet=checked.filter(ok).drop("reasons"),
        excluded=checked.filter(~ok).select("device_id", "reasons"),
    )
