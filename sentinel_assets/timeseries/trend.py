"""The recent trend recovery decisions may use: each device's latest battery drain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from sentinel_assets.contracts import validate_region
from sentinel_assets.timeseries.readings import KEYS
from sentinel_assets.warehouse import table_dir

DRAIN_COLUMN = "battery_drain_pct_per_h"
DRAIN_PREFIX = f"{DRAIN_COLUMN}_"
SOURCE_TABLE = "device_timeseries"


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


def _window_minutes(column: str) -> int:
    """`battery_drain_pct_per_h_24h` -> 1440, `..._90m` -> 90 (`settings.window_label`)."""
    label = column.removeprefix(DRAIN_PREFIX)
    return int(label[:-1]) * (60 if label.endswith("h") else 1)


@dataclass(frozen=True)
class RecentTrend:
    """What `recent_drain` found for a region: the per-device drain for `decide_recovery`,
    or `drain is None` when the region has no time series up to the snapshot."""

    drain: pl.DataFrame | None
    day: date | None = None  # the latest device_timeseries day read
    window: str | None = None  # its drain column's window label (the longest it has)

    def describe(self) -> str:
        """One sentence for the asset's metadata."""
        if self.drain is None:
            return (
                f"no {SOURCE_TABLE} for this region up to the snapshot: decisions use the "
                "static guards only (as without a time series)"
            )
        return (
            f"{SOURCE_TABLE} of {self.day}: {self.drain.height} device(s) with a "
            f"{self.window} battery drain; devices above max_battery_drain_pct_per_h are "
            "deferred, the others decided by the static guards"
        )


def recent_drain(tables_root: Path, region: str, as_of: datetime) -> RecentTrend:
    """The region's latest battery drain per device from `device_timeseries`: its latest day
    on or before the snapshot `as_of` (with the day before, so a device silent since then
    still has its last drain), slots that start before `as_of` only, the longest window the
    series has. No file for the region on or before that day: `RecentTrend(None)`."""
    folder = table_dir(tables_root, SOURCE_TABLE)
    name = f"region={validate_region(region)}.parquet"
    days = sorted(
        (day, path)
        for path in folder.glob(f"date=*/{name}")
        if (day := date.fromisoformat(path.parent.name.removeprefix("date="))) <= as_of.date()
    )
    if not days:
        return RecentTrend(None)
    latest = days[-2:]
    series = pl.scan_parquet([path for _, path in latest])
    columns = [c for c in series.collect_schema().names() if c.startswith(DRAIN_PREFIX)]
    column = max(columns, key=_window_minutes)
    window = column.removeprefix(DRAIN_PREFIX)
    recent = series.filter(pl.col("slot_ts") < as_of).select(*KEYS, "slot_ts", column).collect()
    return RecentTrend(latest_drain(recent, window), latest[-1][0], window)
