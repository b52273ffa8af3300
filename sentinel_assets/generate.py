"""Synthetic fleet generator: a region's devices as they stand mid-way through an OTA campaign.

Everything is drawn in vectorized NumPy from one seeded generator per (seed, region), so the
same seed, region and size always give the identical frame. Faker is used only for the small
pool of site names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
import polars as pl
from faker import Faker
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from sentinel_assets.contracts import (
    BOUNDS,
    CAMPAIGN_TARGETS,
    COMMIT_STATES,
    FAILURE_KINDS,
    FLEET_COLUMNS,
    FLEET_DTYPES,
    FLEET_VOCABULARY,
    HARDWARE_REVS,
    MODELS,
    PARTITION_KEY,
    PREVIOUS_IMAGES,
    RECORD_ID,
    REGIONS,
    UNHEALTHY_STATUSES,
    UPDATE_STATUSES,
    first_record_id,
    region_code,
)
from sentinel_assets.contracts import region as region_row

SITES_PER_REGION = 40
STALE_SHARE = 0.03  # devices that have not reported for days
MAX_TRIAL_BOOTS = 5  # a device on trial has booted its new image 1..5 times


def _weights(allowed: tuple[str, ...], *, exact: bool) -> Any:
    """A validator: the mapping's keys are `allowed` (all of them if `exact`), values >= 0."""

    def check(weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(allowed))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {', '.join(allowed)}")
        missing = sorted(set(allowed) - set(weights))
        if exact and missing:
            raise ValueError(f"missing keys {missing}")
        negative = {key: value for key, value in weights.items() if not value >= 0}
        if negative:
            raise ValueError(f"weights must be non-negative, got {negative}")
        return weights

    return AfterValidator(check)


class FleetProfile(BaseModel):
    """How a campaign tends to go: base status mix and where it goes worse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status_weights: Annotated[dict[str, float], _weights(UPDATE_STATUSES, exact=True)] = Field(
        default={"success": 0.70, "partial": 0.07, "failed": 0.11, "pending": 0.12},
        description="Relative odds of each update status (every status, none negative).",
    )
    failure_kind_weights: Annotated[dict[str, float], _weights(FAILURE_KINDS, exact=True)] = Field(
        default={
            "download_timeout": 0.40,
            "connection_lost": 0.30,
            "out_of_storage": 0.15,
            "verification_failed": 0.15,
        },
        description="Relative odds of each failure kind among failed updates.",
    )
    region_failure_bias: Annotated[dict[str, float], _weights(REGIONS, exact=False)] = Field(
        default={r.name: r.failure_bias for r in FLEET_VOCABULARY.regions if r.failure_bias != 1},
        description="Multiplier on failed/partial odds per region (1.0 = none; default: the "
        "fleet file's failure_bias).",
    )
    model_failure_bias: Annotated[dict[str, float], _weights(MODELS, exact=False)] = Field(
        default={m.name: m.failure_bias for m in FLEET_VOCABULARY.models if m.failure_bias != 1},
        description="Multiplier on failed/partial odds per device model (1.0 = none; default: "
        "the fleet file's failure_bias).",
    )
    trial_boot_share: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="Share of partial updates whose new image was booted (on trial) "
        "rather than only written.",
    )

    @field_validator("status_weights")
    @classmethod
    def _some_status_is_possible(cls, weights: dict[str, float]) -> dict[str, float]:
        if sum(weights.values()) <= 0:
            raise ValueError("status weights must not all be zero")
        return weights


CITY_PROVIDERS = ["faker.providers.address", "faker.providers.person"]


def site_names(region: str, seed: int) -> list[str]:
    """A deterministic pool of plausible city names for the region's installation sites."""
    row = region_row(region)
    # Only the providers a city name draws on: the same names as a full `Faker(locale)`,
    # without building the other ~25 providers of every locale on each region's first call.
    faker = Faker(row.site_locale, providers=CITY_PROVIDERS)
    faker.seed_instance(seed * 1000 + row.number)
    return [faker.city() for _ in range(SITES_PER_REGION)]


def _status_draw(
    rng: np.random.Generator, model_idx: np.ndarray, region: str, profile: FleetProfile
) -> np.ndarray:
    """Per-device status index, with failure and partial odds scaled by region and model bias."""
    n = len(model_idx)
    model_bias = np.array([profile.model_failure_bias.get(m, 1.0) for m in MODELS])
    bias = profile.region_failure_bias.get(region, 1.0) * model_bias[model_idx]
    biased = {UPDATE_STATUSES.index(s) for s in UNHEALTHY_STATUSES}
    # Running sums of each device's weights, one status at a time: the same additions in the
    # same order as a cumulative sum over an (n, statuses) weight matrix, without building it.
    cumulative: list[np.ndarray] = []
    for i, status in enumerate(UPDATE_STATUSES):
        weight = profile.status_weights[status]
        column = weight * bias if i in biased else np.full(n, float(weight))
        cumulative.append(column if not cumulative else cumulative[-1] + column)
    draw = rng.random(n) * cumulative[-1]
    index = np.zeros(n, dtype=np.int64)
    for bound in cumulative:
        index += draw >= bound
    return index


def _pick(pool: list[str] | tuple[str, ...], index: np.ndarray) -> pl.Series:
    return pl.Series(list(pool), dtype=pl.String).gather(index)


def generate_fleet(
    region: str,
    devices: int,
    *,
    seed: int,
    as_of: datetime,
    profile: FleetProfile | None = None,
) -> pl.DataFrame:
    """The region's fleet as a frame that satisfies `contracts.FleetRecord`; its record ids
    start at the region's first record id."""
    home = region_row(region)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    profile = profile or FleetProfile()
    rng = np.random.default_rng([seed, home.number])
    n = devices

    model_idx = rng.integers(0, len(MODELS), n)
    status_idx = _status_draw(rng, model_idx, region, profile)
    is_failed = status_idx == UPDATE_STATUSES.index("failed")
    is_partial = status_idx == UPDATE_STATUSES.index("partial")

    battery_pct = np.where(is_partial, rng.beta(2.0, 3.0, n), rng.beta(5.0, 2.0, n)) * 100
    voltage = 3.3 + 0.9 * battery_pct / 100 + rng.normal(0, 0.04, n)  # Li-ion: ~3.3 V empty
    signal = rng.normal(-82, 11, n) - np.where(is_failed, 14, 0)
    temperature = rng.normal(27, 11, n)
    retries = np.where(is_failed, rng.poisson(1.6, n), np.where(is_partial, rng.poisson(0.3, n), 0))
    hours_since_seen = np.where(
        rng.random(n) < STALE_SHARE, rng.uniform(72, 24 * 30, n), rng.exponential(5.0, n)
    )

    kind_weights = np.array([profile.failure_kind_weights[k] for k in FAILURE_KINDS])
    kind_idx = rng.choice(len(FAILURE_KINDS), size=n, p=kind_weights / kind_weights.sum())
    previous_choice = rng.random(n)
    # Every model's previous images in one pool; a device picks within its model's slice
    # (integer indices throughout: no per-device Python strings).
    images = [image for model in MODELS for image in PREVIOUS_IMAGES[model]]
    pool_sizes = np.array([len(PREVIOUS_IMAGES[model]) for model in MODELS])
    pool_starts = np.concatenate([[0], np.cumsum(pool_sizes)[:-1]])
    image_idx = pool_starts[model_idx] + (previous_choice * pool_sizes[model_idx]).astype(int)
    sites = site_names(region, seed)
    # Drawn last, so adding them left every earlier column of a seeded fleet unchanged.
    on_trial = is_partial & (rng.random(n) < profile.trial_boot_share)
    boot_attempts = np.where(on_trial, rng.integers(1, MAX_TRIAL_BOOTS + 1, n), 0)
    commit_state = np.where(on_trial, COMMIT_STATES.index("trial_boot"), 0)

    sequence = np.arange(n, dtype=np.int64)

    def clip(column: str, values: np.ndarray) -> np.ndarray:
        return np.clip(values, BOUNDS[column].low, BOUNDS[column].high)

    frame = pl.DataFrame(
        {
            RECORD_ID: first_record_id(region) + sequence,
            PARTITION_KEY: pl.repeat(region, n, eager=True, dtype=pl.String),
            "sequence": sequence,
            "region": pl.repeat(region, n, eager=True, dtype=pl.String),
            "site": _pick(sites, rng.integers(0, len(sites), n)),
            "model": _pick(MODELS, model_idx),
            "hardware_rev": _pick(HARDWARE_REVS, rng.integers(0, len(HARDWARE_REVS), n)),
            "firmware_from": _pick(images, image_idx),
            "update_status": _pick(UPDATE_STATUSES, status_idx),
            "failure_kind": _pick(FAILURE_KINDS, kind_idx),
            "commit_state": _pick(COMMIT_STATES, commit_state),
            "battery_pct": clip("battery_pct", battery_pct).round(1),
            "battery_voltage_v": clip("battery_voltage_v", voltage).round(3),
            "signal_dbm": clip("signal_dbm", signal).round().astype(np.int64),
            "temperature_c": clip("temperature_c", temperature).round(1),
            "retry_count": clip("retry_count", retries).astype(np.int64),
            "boot_attempts": boot_attempts.astype(np.int64),
            "hours_since_seen": hours_since_seen,
        }
    )
    return frame.select(
        pl.format(
            "SN-{}-{}",
            pl.lit(region_code(region)),
            pl.col("sequence").cast(pl.String).str.zfill(8),
        ).alias("device_id"),
        pl.col("firmware_from"),
        pl.col("model")
        .replace_strict(CAMPAIGN_TARGETS, return_dtype=pl.String)
        .alias("firmware_to"),
        pl.when(pl.col("update_status") == "failed").then(pl.col("failure_kind")),
        pl.when(pl.col("update_status") == "partial").then(pl.col("commit_state")),
        (
            pl.lit(as_of).dt.cast_time_unit("us").dt.convert_time_zone("UTC")
            - pl.duration(microseconds=(pl.col("hours_since_seen") * 3.6e9).cast(pl.Int64))
        ).alias("last_seen_at"),
        pl.exclude("firmware_from", "failure_kind", "commit_state", "hours_since_seen", "sequence"),
    ).select([pl.col(c).cast(FLEET_DTYPES[c]) for c in FLEET_COLUMNS])
