"""Run configuration: fleet size, chaos rates, recovery thresholds and quality gates.

Each section is the domain's own parameter model (defaults, bounds and descriptions stated
once, where the domain uses them) made a Dagster `Config`, so the Launchpad shows every value
with its default and description, and pydantic rejects an invalid one with a message naming
it when the run's resources are set up, before anything is written.
"""

import os
from datetime import datetime
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from sentinel_assets.chaos import ChaosPlan, FaultRates
from sentinel_assets.contracts import region as region_row
from sentinel_assets.generate import FleetProfile
from sentinel_assets.quality import QualityGates
from sentinel_assets.recovery import DEFAULT_AS_OF, RecoveryPolicy, parse_as_of
from sentinel_assets.timeseries.settings import TimeseriesSettings


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


DEVICES_PER_REGION_ENV = "SENTINEL_DEVICES_PER_REGION"
DEFAULT_DEVICES_PER_REGION = 10_000


def devices_per_region() -> int:
    """The simulated fleet's size per region, as every run reads it from the environment."""
    return env_int(DEVICES_PER_REGION_ENV, DEFAULT_DEVICES_PER_REGION)


class SimulationSettings(dg.Config, FleetProfile):
    """The synthetic fleet: how many devices, which seed, the campaign's snapshot time, and
    how the campaign goes (`generate.FleetProfile`: status mix, where it goes worse)."""

    source: Literal["simulator", "landing"] = Field(
        default="simulator",
        description="Where raw_fleet comes from: the generator, or the latest landed event per "
        "device as of `as_of` (the telemetry lake, filled by the landing sensor or "
        "`sentinel ingest`).",
    )
    devices_per_region: int = Field(default=10_000, ge=0, le=50_000_000)
    seed: int = 7
    as_of: str = Field(
        default=DEFAULT_AS_OF,
        description="Snapshot time of the campaign (ISO 8601 with a UTC offset).",
    )

    @field_validator("as_of")
    @classmethod
    def _as_of_is_aware(cls, value: str) -> str:
        parse_as_of(value)
        return value

    def as_of_utc(self) -> datetime:
        return parse_as_of(self.as_of)


class FaultRateSettings(dg.Config, FaultRates):
    """The share of records hit by each fault kind (`chaos.FaultRates`), one field per kind."""


class ChaosSettings(dg.Config, ChaosPlan):
    """Fault injection (`chaos.ChaosPlan`): the share of records hit per fault kind."""

    rates: FaultRateSettings = Field(
        default_factory=FaultRateSettings,
        description=ChaosPlan.model_fields["rates"].description,
    )


class RecoverySettings(dg.Config, RecoveryPolicy):
    """The recovery policy (`recovery.RecoveryPolicy`, where every threshold's default and
    bounds are stated): retry, rollback guard, stale devices and the per-region campaign
    abort. Invalid values are rejected with their names."""


class GateSettings(dg.Config, QualityGates):
    """Dataset-level limits (`quality.QualityGates`); breaking one fails a blocking check."""


def region_seed(seed: int, region: str) -> list[int]:
    """A per-region seed, so shards are independent yet reproducible."""
    return [seed, region_row(region).number]


class TimeseriesConfig(dg.Config, TimeseriesSettings):
    """Telemetry over time (`timeseries.settings.TimeseriesSettings`): grid interval,
    interpolation limit, rolling windows, anomaly thresholds and the anomaly alert rate."""
