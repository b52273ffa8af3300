"""Run configuration: fleet size, chaos rates, recovery thresholds and quality gates.

Every value has a documented default (shown in the launchpad) and an invalid one is rejected
with a message naming it, before the run writes anything.
"""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from sentinel_assets.chaos import DEFAULT_RATES, validate_rates
from sentinel_assets.contracts import REGIONS
from sentinel_assets.generate import FleetProfile
from sentinel_assets.recovery import RecoveryPolicy

DEFAULT_HOME = ".sentinel"


def data_home() -> Path:
    """The one local data folder: `$SENTINEL_HOME`, else ./.sentinel."""
    return Path(os.environ.get("SENTINEL_HOME") or DEFAULT_HOME).expanduser().resolve()


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


class SimulationSettings(dg.Config):
    """The synthetic fleet: how many devices, which seed, and where the campaign goes worse."""

    source: Literal["simulator", "landing"] = Field(
        default="simulator",
        description="Where raw_fleet comes from: the generator, or the latest landed event per "
        "device as of `as_of` (the telemetry lake, filled by the landing sensor or "
        "`sentinel ingest`).",
    )
    devices_per_region: int = Field(default=10_000, ge=0, le=50_000_000)
    seed: int = 7
    as_of: str = Field(
        default="2026-11-01T00:00:00+00:00",
        description="Snapshot time of the campaign (ISO 8601 with a UTC offset).",
    )
    region_failure_bias: dict[str, float] = Field(
        default={"af-south": 1.8, "sa-east": 1.4, "ap-south": 1.2},
        description="Multiplier on failed/partial odds per region (1.0 = none).",
    )
    model_failure_bias: dict[str, float] = Field(
        default={"cam-x3": 1.6, "sensor-s1": 1.2},
        description="Multiplier on failed/partial odds per device model (1.0 = none).",
    )

    @field_validator("as_of")
    @classmethod
    def _as_of_is_aware(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"as_of must be an ISO 8601 timestamp, got {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"as_of must carry a UTC offset, got {value!r}")
        return value

    @model_validator(mode="after")
    def _profile_is_valid(self) -> "SimulationSettings":
        self.profile()
        return self

    def as_of_utc(self) -> datetime:
        return datetime.fromisoformat(self.as_of).astimezone(UTC)

    def profile(self) -> FleetProfile:
        return FleetProfile(
            region_failure_bias=self.region_failure_bias,
            model_failure_bias=self.model_failure_bias,
        )


class ChaosSettings(dg.Config):
    """Fault-injection rates per kind, each the share of records hit, within [0, 1]."""

    rates: dict[str, float] = Field(default=dict(DEFAULT_RATES))
    seed: int = 11

    @field_validator("rates")
    @classmethod
    def _rates_are_valid(cls, value: dict[str, float]) -> dict[str, float]:
        return validate_rates(value)


class RecoverySettings(dg.Config):
    """The recovery policy (`recovery.RecoveryPolicy`): retry, rollback guard, stale devices
    and the per-region campaign abort. Invalid values are rejected with their names."""

    min_rollback_battery_pct: float = Field(
        default=RecoveryPolicy.min_rollback_battery_pct,
        description="A partial device rolls back only at or above this battery %; else defer.",
    )
    min_rollback_voltage_v: float = Field(
        default=RecoveryPolicy.min_rollback_voltage_v,
        description="... and at or above this cell voltage (Li-ion: ~3.3 V empty, 4.2 V full).",
    )
    max_rollback_temperature_c: float = Field(
        default=RecoveryPolicy.max_rollback_temperature_c,
        description="Above this device temperature a rollback is deferred (cool down first).",
    )
    max_boot_attempts: int = Field(
        default=RecoveryPolicy.max_boot_attempts,
        description="Boots a new image on trial gets from its watchdog before it is rolled "
        "back (greenboot: 3); until then the device is left to commit or fall back itself.",
    )
    min_retry_battery_pct: float = Field(
        default=RecoveryPolicy.min_retry_battery_pct,
        description="A failed device is retried only at or above this battery %; else defer.",
    )
    max_retries: int = Field(
        default=RecoveryPolicy.max_retries,
        description="Retries per device (0-10, like AWS IoT Jobs); reached -> manual triage.",
    )
    min_signal_dbm: float = Field(
        default=RecoveryPolicy.min_signal_dbm,
        description="Below this signal a retry is pointless (the download will not finish).",
    )
    retriable_failure_kinds: list[str] = Field(
        default=list(RecoveryPolicy.retriable_failure_kinds),
        description="Failure kinds worth retrying; any other kind goes to manual triage.",
    )
    retry_backoff_minutes: float = Field(
        default=RecoveryPolicy.retry_backoff_minutes,
        description="Wait before a first retry; doubles with each earlier retry.",
    )
    retry_backoff_max_minutes: float = Field(
        default=RecoveryPolicy.retry_backoff_max_minutes,
        description="Longest wait between retries (default one day: no retry storms).",
    )
    stale_after_hours: float = Field(
        default=RecoveryPolicy.stale_after_hours,
        description="A device silent for longer is sent to triage, not acted on blindly.",
    )
    abort_failure_rate: float = Field(
        default=RecoveryPolicy.abort_failure_rate,
        description="Halt a region's campaign when this share of attempted updates failed ...",
    )
    abort_min_attempted: int = Field(
        default=RecoveryPolicy.abort_min_attempted,
        description="... once at least this many devices attempted the update.",
    )

    @model_validator(mode="after")
    def _policy_is_valid(self) -> "RecoverySettings":
        self.policy()
        return self

    def policy(self) -> RecoveryPolicy:
        values = self.model_dump()
        values["retriable_failure_kinds"] = tuple(values["retriable_failure_kinds"])
        return RecoveryPolicy(**values)


class QualityGates(dg.Config):
    """Dataset-level limits beyond the row contracts; breaking one fails a blocking check."""

    max_quarantine_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A shard with a larger share of records quarantined is not trusted.",
    )


def region_seed(seed: int, region: str) -> list[int]:
    """A per-region seed, so shards are independent yet reproducible."""
    return [seed, REGIONS.index(region)]
