"""The time-series settings: grid interval, interpolation limit, windows, anomaly thresholds.

One pydantic model, validated once; the Dagster run config mirrors it (`defs/config.py`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sentinel_assets.contracts import BOUNDS

_TEMP, _SIGNAL, _VOLTS = BOUNDS["temperature_c"], BOUNDS["signal_dbm"], BOUNDS["battery_voltage_v"]
MINUTES_PER_DAY = 24 * 60


def _windows(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("rolling_windows_minutes needs at least one window")
    if len(set(values)) != len(values):
        raise ValueError(f"rolling_windows_minutes has duplicates: {values}")
    if any(v <= 0 or v > MINUTES_PER_DAY for v in values):
        raise ValueError(f"rolling windows must be within 1..{MINUTES_PER_DAY} minutes: {values}")
    return sorted(values)


def window_label(minutes: int) -> str:
    """A window as it reads in column names: 60 -> `1h`, 1440 -> `24h`, 90 -> `90m`."""
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


class TimeseriesSettings(BaseModel):
    """How telemetry becomes a time series and what counts as an anomaly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_minutes: int = Field(
        default=15,
        ge=1,
        le=MINUTES_PER_DAY,
        description="Grid interval of device_timeseries; must divide a day (1440 minutes).",
    )
    max_interpolation_gap_minutes: int = Field(
        default=60,
        ge=0,
        le=MINUTES_PER_DAY,
        description="Longest time between two real readings that is bridged by linear "
        "interpolation; the grid slots of a longer gap stay NULL and are outages.",
    )
    rolling_windows_minutes: Annotated[list[int], AfterValidator(_windows)] = Field(
        default=[60, 1440],
        description="Trailing windows of the rolling means and the drain slope (minutes).",
    )
    # Anomaly rules (seed defaults).
    hot_temperature_c: float = Field(
        default=45.0, ge=_TEMP.low, le=_TEMP.high, description="hot_low_battery: above this °C ..."
    )
    low_battery_pct: float = Field(
        default=20.0, ge=0, le=100, description="... while the battery is below this %."
    )
    sag_voltage_v: float = Field(
        default=3.5,
        ge=_VOLTS.low,
        le=_VOLTS.high,
        description="voltage_sag: cell voltage below this V ...",
    )
    sag_min_battery_pct: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="... while the battery still reports at least this % (the cell sags "
        "under load, it is not empty).",
    )
    signal_collapse_dbm: float = Field(
        default=-115.0,
        ge=_SIGNAL.low,
        le=_SIGNAL.high,
        description="signal_collapse: signal below this dBm.",
    )
    zscore_threshold: float = Field(
        default=3.0,
        gt=0,
        description="temperature_zscore: |temperature - its 24 h mean| / its 24 h standard "
        "deviation above this.",
    )
    zscore_window_minutes: int = Field(
        default=1440, ge=60, le=MINUTES_PER_DAY, description="Window of the z-score (minutes)."
    )
    zscore_min_readings: int = Field(
        default=8, ge=3, description="A z-score needs at least this many readings in its window."
    )
    max_anomaly_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Alert when a region's share of devices with an anomaly episode in a day "
        "exceeds this (the daily_region_stats check fails and the alert sensor raises it).",
    )

    @model_validator(mode="after")
    def _interval_divides_day(self) -> Self:
        if MINUTES_PER_DAY % self.interval_minutes:
            raise ValueError(
                f"interval_minutes ({self.interval_minutes}) must divide a day (1440 minutes)"
            )
        return self

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)

    @property
    def max_gap(self) -> timedelta:
        return timedelta(minutes=self.max_interpolation_gap_minutes)

    @property
    def slots_per_day(self) -> int:
        return MINUTES_PER_DAY // self.interval_minutes

    @property
    def window_labels(self) -> list[str]:
        return [window_label(m) for m in self.rolling_windows_minutes]
