"""The recent trend recovery decisions may use: each device's latest battery drain."""

from __future__ import annotations

import polars as pl

from sentinel_assets.timeseries.readings import KEYS

DRAIN_COLUMN = "battery_drain_pct_per_h"


def latest_drain(timeseries: pl.DataFrame, window_label: str = "24h") -> pl.DataFrame:
    """Per device, the drain (% per hour) of its latest slot that has one: the input of
    `recovery.decide_recovery(trend=...)`. Devices without enough readings are left out."""
    column = f"battery_drain_pct_per_h_{window_label}"
    return (
        timeseries.filter(pl.col(column).is_not_null())
        .sort(*KEYS, "slot_ts")
        .group_by(*KEYS, maintain_order=True)
        .agg(pl.col(column).last().alias(DRAIN_COLUMN), pl.col("slot_ts").last().alias("as_of"))
    )
