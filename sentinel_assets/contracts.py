"""Data contracts: the one place that says what a trustworthy record looks like.

The generator draws its values from these bounds and allowed values, the chaos injector
breaks exactly these rules, the sanitizer derives its row-level rules from these models
(`row_rules`), and the Dagster asset checks validate each asset against them.

The fleet's vocabulary (regions, models with their firmware, board revisions) is not code: it is
loaded here, once, from the fleet file (`SENTINEL_FLEET_CONFIG`, default the packaged
`fleet.toml`; see `sentinel_assets.vocabulary`). It is read at import, unlike every other
setting, because the Pandera models below name the allowed values in their class bodies and
Dagster's region partitions are built when the definitions are imported. A bad file raises
`FleetVocabularyError`, one sentence naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Optional

import pandera.polars as pa
import polars as pl

from sentinel_assets import vocabulary
from sentinel_assets.vocabulary import FIRMWARE_PATTERN, FleetVocabulary


@dataclass(frozen=True)
class Region:
    """One region of the fleet: a partition of every fleet table."""

    name: str
    code: str  # the three letters in its device ids
    number: int  # stable and unique: the leading digits of every record id of the region
    site_locale: str  # Faker locale of its installation sites' names


# The region table: the regions of the fleet file, in its order. A region keeps its number for
# good (record ids and seeds derive from it), so a new region takes the next free number.
FLEET_VOCABULARY: FleetVocabulary = vocabulary.configured()
REGION_TABLE: tuple[Region, ...] = tuple(
    Region(r.name, r.code, r.number, r.site_locale) for r in FLEET_VOCABULARY.regions
)
REGIONS: tuple[str, ...] = tuple(region.name for region in REGION_TABLE)
_REGIONS_BY_NAME: Mapping[str, Region] = {region.name: region for region in REGION_TABLE}

# Record identity. `record_id` is unique across the whole warehouse: the region's number
# times RECORD_ID_STRIDE plus the record's sequence within its region, so 3_000_000_000_042 is
# record 42 of region 3 (eu-west). `partition_key` is the Dagster partition key of the shard
# that holds the row. Chaos never touches either: a record can always be traced to its shard.
RECORD_ID = "record_id"
PARTITION_KEY = "partition_key"
IDENTITY_COLUMNS: tuple[str, ...] = (RECORD_ID, PARTITION_KEY)
RECORD_ID_STRIDE = 10**12

UPDATE_STATUSES: tuple[str, ...] = ("success", "partial", "failed", "pending")
# Devices the campaign left unhealthy: what recovery acts on and what failure rates count.
UNHEALTHY_STATUSES: tuple[str, ...] = ("partial", "failed")
FAILURE_KINDS: tuple[str, ...] = (
    "download_timeout",
    "connection_lost",
    "out_of_storage",
    "verification_failed",
)
# Where a partial (written, not committed) update stopped, as an A/B-slot device reports it:
# `written` - the new image sits in the inactive slot and was never booted (install interrupted,
# power lost): the device still runs its old image. `trial_boot` - the device booted the new
# image, which is not committed yet: its boot-health watchdog (greenboot-style) tries it for a
# few boots, then should fall back on its own; past that limit the device is stuck.
COMMIT_STATES: tuple[str, ...] = ("written", "trial_boot")
MODELS: tuple[str, ...] = tuple(model.name for model in FLEET_VOCABULARY.models)
HARDWARE_REVS: tuple[str, ...] = FLEET_VOCABULARY.hardware_revs
# The campaign under way, from the fleet file: every model is being moved to its target image
# from one of a few older ones.
CAMPAIGN_TARGETS: Mapping[str, str] = {m.name: m.campaign_target for m in FLEET_VOCABULARY.models}
PREVIOUS_IMAGES: Mapping[str, tuple[str, ...]] = {
    m.name: m.previous_images for m in FLEET_VOCABULARY.models
}
ACTIONS: tuple[str, ...] = ("retry", "rollback", "defer", "manual_triage", "hold")
# Stable code of the recovery guard that decided, one per rule of `recovery.RecoveryPolicy`:
# the human `reason` carries the numbers, the code is what reports group by.
REASON_CODES: tuple[str, ...] = (
    "campaign_halted",
    "stale_device",
    "boot_check_running",
    "low_battery",
    "battery_draining",
    "over_temperature",
    "boot_failed",
    "uncommitted_image",
    "not_retriable",
    "retry_limit",
    "weak_signal",
    "transient_failure",
)
# A device's status once the decisions were applied (see `outcomes`): healthy and untouched
# devices keep their status; a retry or rollback that did not work leaves it `still_failed`.
OUTCOME_STATUSES: tuple[str, ...] = (
    "success",
    "pending",
    "recovered",
    "rolled_back",
    "still_failed",
    "deferred",
    "held",
    "in_triage",
)
ACTION_SUCCEEDED: Mapping[str, str] = {"retry": "recovered", "rollback": "rolled_back"}
ACTION_OUTCOME: Mapping[str, str] = {
    "defer": "deferred",
    "hold": "held",
    "manual_triage": "in_triage",
}
CAMPAIGN_STATES: tuple[str, ...] = ("running", "halted")
FAULT_KINDS: tuple[str, ...] = (
    "null",
    "type_mismatch",
    "out_of_bounds",
    "unknown_status",
    "duplicate_row",
    "malformed_device_id",
)

DEVICE_ID_PATTERN = r"^SN-[A-Z]{3}-[0-9]{8}$"


@dataclass(frozen=True)
class Bounds:
    """Physically plausible range of a telemetry reading, inclusive."""

    low: float
    high: float


BOUNDS: Mapping[str, Bounds] = {
    "battery_pct": Bounds(0, 100),
    "battery_voltage_v": Bounds(2.5, 4.5),
    "signal_dbm": Bounds(-130, -20),
    "temperature_c": Bounds(-40, 85),
    "retry_count": Bounds(0, 100),
    "boot_attempts": Bounds(0, 20),
}


def _in_bounds(column: str) -> dict[str, float]:
    bounds = BOUNDS[column]
    return {"min_value": bounds.low, "max_value": bounds.high}


def region(name: str) -> Region:
    """The region's row of the region table; unknown names get a readable error."""
    validate_region(name)
    return _REGIONS_BY_NAME[name]


def region_code(name: str) -> str:
    """Three-letter code used in device ids."""
    return region(name).code


def validate_region(name: str) -> str:
    """Reject unknown regions before they reach a file path or a query."""
    if name not in _REGIONS_BY_NAME:
        raise ValueError(f"unknown region {name!r}; expected one of: {', '.join(REGIONS)}")
    return name


def first_record_id(name: str) -> int:
    """The record id of the region's record number 0."""
    return region(name).number * RECORD_ID_STRIDE


def record_region_number() -> pl.Expr:
    """The region number a record id belongs to."""
    return pl.col(RECORD_ID) // RECORD_ID_STRIDE


def partition_region_number() -> pl.Expr:
    """The region number of the row's shard."""
    numbers = {r.name: r.number for r in REGION_TABLE}
    return pl.col(PARTITION_KEY).replace_strict(numbers, default=None, return_dtype=pl.Int64)


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule over several columns; `valid` is true for a row that keeps it."""

    column: str
    rule: str
    valid: pl.Expr


# Keyed by the name of the model's dataframe check that enforces it. Null inputs count as
# valid: the column rules already report the missing value.
CROSS_FIELD_RULES: Mapping[str, CrossFieldRule] = {
    "record_in_its_partition": CrossFieldRule(
        RECORD_ID, "other_partition", record_region_number() == partition_region_number()
    ),
    "failure_kind_iff_failed": CrossFieldRule(
        "failure_kind",
        "set_iff_failed",
        (pl.col("update_status") == "failed") == pl.col("failure_kind").is_not_null(),
    ),
    "commit_state_iff_partial": CrossFieldRule(
        "commit_state",
        "set_iff_partial",
        (pl.col("update_status") == "partial") == pl.col("commit_state").is_not_null(),
    ),
    "boot_attempts_iff_trial_boot": CrossFieldRule(
        "boot_attempts",
        "set_iff_trial_boot",
        (pl.col("commit_state").fill_null("") == "trial_boot") == (pl.col("boot_attempts") > 0),
    ),
}


class PartitionedRecord(pa.DataFrameModel):
    """The identity every record of a region-partitioned table carries (see RECORD_ID)."""

    record_id: int = pa.Field(
        ge=0,
        unique=True,
        description="Unique across the warehouse: region number x 10^12 + sequence in region.",
    )
    partition_key: str = pa.Field(
        isin=list(REGIONS),
        description="Region partition (shard) that holds the row; never corrupted.",
    )

    @pa.dataframe_check
    def record_in_its_partition(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A record id carries the number of the region whose shard holds it."""
        return _cross_field_check(data, "record_in_its_partition")


class FleetRecord(PartitionedRecord):
    """One device of the fleet mid-way through an OTA campaign (raw and sanitized fleet)."""

    device_id: str = pa.Field(
        str_matches=DEVICE_ID_PATTERN,
        unique=True,
        description="Device serial: SN-<region code>-<8 digits>, unique in the fleet.",
    )
    region: str = pa.Field(
        isin=list(REGIONS),
        description="Deployment region of the device; fleet assets are partitioned by it.",
    )
    site: str = pa.Field(description="Installation site (city) of the device.")
    model: str = pa.Field(isin=list(MODELS), description="Device model.")
    hardware_rev: str = pa.Field(
        isin=list(HARDWARE_REVS), description="Hardware revision of the device's board."
    )
    firmware_from: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version (x.y.z) the device ran before the campaign.",
    )
    firmware_to: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version (x.y.z) the campaign installs on this model.",
    )
    update_status: str = pa.Field(
        isin=list(UPDATE_STATUSES),
        description="OTA update status: success, partial (not committed), failed or pending.",
    )
    failure_kind: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True, isin=list(FAILURE_KINDS), description="Why a failed update failed."
    )
    commit_state: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True,
        isin=list(COMMIT_STATES),
        description="Where a partial update stopped (see COMMIT_STATES).",
    )
    battery_pct: float = pa.Field(
        in_range=_in_bounds("battery_pct"), description="Battery charge, % of full."
    )
    battery_voltage_v: float = pa.Field(
        in_range=_in_bounds("battery_voltage_v"),
        description="Battery cell voltage, V (Li-ion: ~3.3 V empty, ~4.2 V full).",
    )
    signal_dbm: int = pa.Field(
        in_range=_in_bounds("signal_dbm"),
        description="Radio signal strength, dBm (higher is better).",
    )
    temperature_c: float = pa.Field(
        in_range=_in_bounds("temperature_c"), description="Device temperature, °C."
    )
    retry_count: int = pa.Field(
        in_range=_in_bounds("retry_count"),
        description="Update retries already made on this device.",
    )
    boot_attempts: int = pa.Field(
        in_range=_in_bounds("boot_attempts"),
        description="Boots of the uncommitted new image so far (0 unless in trial boot).",
    )
    last_seen_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="When the device last reported, UTC."
    )

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def failure_kind_iff_failed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A failed update names its failure kind; no other status has one."""
        return _cross_field_check(data, "failure_kind_iff_failed")

    @pa.dataframe_check
    def commit_state_iff_partial(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Only a partial update stopped somewhere short of its commit."""
        return _cross_field_check(data, "commit_state_iff_partial")

    @pa.dataframe_check
    def boot_attempts_iff_trial_boot(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Only a new image on trial has been booted without being committed."""
        return _cross_field_check(data, "boot_attempts_iff_trial_boot")


def _cross_field_check(data: pa.PolarsData, rule: str) -> pl.LazyFrame:
    return data.lazyframe.select(CROSS_FIELD_RULES[rule].valid.fill_null(True))


FLEET_SCHEMA: pa.DataFrameSchema = FleetRecord.to_schema()
FLEET_COLUMNS: tuple[str, ...] = tuple(FLEET_SCHEMA.columns)
FLEET_DTYPES: Mapping[str, pl.DataType] = {
    name: column.dtype.type for name, column in FLEET_SCHEMA.columns.items()
}
# Numeric readings travel as text through the chaos stage, so "N/A" or "87%" can exist there.
TEXT_ENCODED_COLUMNS: tuple[str, ...] = tuple(
    name for name, dtype in FLEET_DTYPES.items() if dtype.is_numeric() and name != RECORD_ID
)
# Columns whose value the contract requires (chaos may blank them; the sanitizer must notice).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    name
    for name, column in FLEET_SCHEMA.columns.items()
    if not column.nullable and name not in IDENTITY_COLUMNS
)


def corrupted_dtype(column: str) -> pl.DataType:
    """Storage type of a column in the corrupted fleet: numbers become text."""
    return pl.String() if column in TEXT_ENCODED_COLUMNS else FLEET_DTYPES[column]


def _identity_columns(*, unique: bool) -> dict[str, pa.Column]:
    """record_id and partition_key as every partitioned table stores them: never null."""
    return {
        RECORD_ID: pa.Column(
            pl.Int64,
            pa.Check.ge(0),
            unique=unique,
            nullable=False,
            description="The record's id, unique across the warehouse (region number x 10^12 + "
            "sequence); chaos never breaks it, so faults stay traceable.",
        ),
        PARTITION_KEY: pa.Column(
            pl.String,
            pa.Check.isin(list(REGIONS)),
            nullable=False,
            description="Region partition (shard) that holds the row; never corrupted.",
        ),
    }


def _record_in_its_partition() -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(CROSS_FIELD_RULES["record_in_its_partition"].valid),
        name="record_in_its_partition",
    )


CORRUPTED_FLEET_SCHEMA = pa.DataFrameSchema(
    {
        **_identity_columns(unique=True),
        **{
            name: pa.Column(
                corrupted_dtype(name),
                nullable=True,
                description=FLEET_SCHEMA.columns[name].description,
            )
            for name in FLEET_COLUMNS
            if name not in IDENTITY_COLUMNS
        },
    },
    checks=[_record_in_its_partition()],
    strict=True,
    name="CorruptedFleet",
)

CHAOS_LEDGER_SCHEMA = pa.DataFrameSchema(
    {
        **_identity_columns(unique=False),
        "column": pa.Column(
            pl.String, pa.Check.isin(list(FLEET_COLUMNS)), description="Fleet column broken."
        ),
        "fault_kind": pa.Column(
            pl.String, pa.Check.isin(list(FAULT_KINDS)), description="Kind of fault injected."
        ),
        "injected_value": pa.Column(
            pl.String,
            nullable=True,
            description="Value put in, as text ('copy of record <id>' for a duplicate); "
            "null for a null fault.",
        ),
    },
    checks=[_record_in_its_partition()],
    strict=True,
    name="ChaosLedger",
)

QUARANTINE_SCHEMA = pa.DataFrameSchema(
    {
        **_identity_columns(unique=True),
        "reasons": pa.Column(
            pl.List(pl.String),
            pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).list.len() > 0)),
            description="One column:rule code per broken rule, e.g. battery_pct:out_of_range.",
        ),
        **{
            name: column
            for name, column in CORRUPTED_FLEET_SCHEMA.columns.items()
            if name not in IDENTITY_COLUMNS
        },
    },
    checks=[_record_in_its_partition()],
    strict=True,
    name="Quarantine",
)


class CampaignDevice(PartitionedRecord):
    """A device of the campaign as the recovery tables name it: which device, where, and its
    upgrade path."""

    device_id: str = pa.Field(
        str_matches=DEVICE_ID_PATTERN, unique=True, description="Device serial."
    )
    region: str = pa.Field(isin=list(REGIONS), description="Deployment region of the device.")
    model: str = pa.Field(isin=list(MODELS), description="Device model.")
    firmware_from: str = pa.Field(
        str_matches=FIRMWARE_PATTERN, description="Firmware version (x.y.z) before the campaign."
    )
    firmware_to: str = pa.Field(
        str_matches=FIRMWARE_PATTERN, description="Firmware version (x.y.z) the campaign installs."
    )


class RecoveryDecision(CampaignDevice):
    """What to do about one unhealthy device, and why, in words an operator can act on."""

    update_status: str = pa.Field(
        isin=[*UNHEALTHY_STATUSES, "pending"],
        description="Why it is unhealthy: partial, failed, or pending in a halted region.",
    )
    failure_kind: Optional[str] = pa.Field(  # noqa: UP045
        nullable=True,
        isin=list(FAILURE_KINDS),
        description="Why a failed update failed; null for other statuses.",
    )
    commit_state: Optional[str] = pa.Field(  # noqa: UP045
        nullable=True,
        isin=list(COMMIT_STATES),
        description="Where a partial update stopped; null for other statuses.",
    )
    action: str = pa.Field(
        isin=list(ACTIONS), description="What to do: retry, rollback, defer, manual_triage or hold."
    )
    reason_code: str = pa.Field(
        isin=list(REASON_CODES),
        description="Code of the policy rule that decided; reports group by it.",
    )
    reason: str = pa.Field(
        str_length={"min_value": 1},
        description="Why, in words an operator can act on, with the numbers that decided.",
    )
    next_attempt_at: Optional[Annotated[pl.Datetime, "us", "UTC"]] = pa.Field(  # noqa: UP045
        nullable=True, description="When to retry, UTC (exponential backoff); null unless retry."
    )

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def retry_has_next_attempt(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Every retry is scheduled; nothing else is."""
        return data.lazyframe.select(
            (pl.col("action") == "retry") == pl.col("next_attempt_at").is_not_null()
        )


class RegionalRank(pa.DataFrameModel):
    """A region's standing in the campaign and its worst upgrade paths (model, firmware)."""

    region: str = pa.Field(isin=list(REGIONS), description="Deployment region.")
    region_rank: int = pa.Field(
        ge=1, description="RANK() of the region by unhealthy_rate; 1 = worst."
    )
    devices: int = pa.Field(ge=0, description="Devices of the region in the sanitized fleet.")
    failed: int = pa.Field(ge=0, description="Devices of the region whose update failed.")
    partial: int = pa.Field(
        ge=0, description="Devices of the region with a partial (uncommitted) update."
    )
    unhealthy_rate: float = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        description="Share of the region's devices that failed or are partial (0-1).",
    )
    quarantined: int = pa.Field(ge=0, description="Records of the region sent to quarantine.")
    quarantine_rate: float = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        description="Share of the region's records in quarantine (0-1).",
    )
    model: str = pa.Field(isin=list(MODELS), description="Device model of the upgrade path.")
    firmware_from: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version the upgrade path starts from (x.y.z).",
    )
    firmware_to: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version the upgrade path goes to (x.y.z).",
    )
    cluster_devices: int = pa.Field(ge=1, description="Devices of the region on this upgrade path.")
    cluster_failures: int = pa.Field(
        ge=0, description="Failed or partial devices on this upgrade path."
    )
    cluster_failure_rate: float = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        description="cluster_failures / cluster_devices (0-1).",
    )
    cluster_rank: int = pa.Field(
        ge=1, description="RANK() of the upgrade path by failures within the region; 1 = worst."
    )

    class Config:
        strict = False
        coerce = False


class CampaignStatus(pa.DataFrameModel):
    """A region's campaign health against the abort rule, with the numbers that decide it."""

    partition_key: str = pa.Field(
        isin=list(REGIONS), description="Region partition (shard) that holds the row."
    )
    region: str = pa.Field(isin=list(REGIONS), unique=True, description="Deployment region.")
    devices: int = pa.Field(ge=0, description="Devices of the region in the sanitized fleet.")
    attempted: int = pa.Field(ge=0, description="Devices past pending: success, partial, failed.")
    failures: int = pa.Field(ge=0, description="Attempted devices that did not succeed.")
    failure_rate: float = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        description="failures / attempted (0-1; 0 when none attempted).",
    )
    abort_failure_rate: float = pa.Field(
        in_range={"min_value": 0, "max_value": 1},
        description="Policy: halt once this share of attempted updates failed (0-1).",
    )
    abort_min_attempted: int = pa.Field(
        ge=1, description="Policy: the abort rule applies from this many attempted devices."
    )
    halted: bool = pa.Field(
        description="Campaign halted: pending updates and retries of the region are held."
    )

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def halted_iff_abort_rule_met(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Halted exactly when enough devices attempted and the failure rate reached the limit."""
        rule = (pl.col("attempted") >= pl.col("abort_min_attempted")) & (
            pl.col("failure_rate") >= pl.col("abort_failure_rate")
        )
        return data.lazyframe.select(rule == pl.col("halted"))


def _outcome_follows_action() -> pl.Expr:
    """The status after recovery is one the action can lead to; no action changes nothing."""
    action, after = pl.col("action"), pl.col("status_after")
    untouched = (after == pl.col("status_before")) & after.is_in(["success", "pending"])
    reachable = [f"{a}>{s}" for a, s in ACTION_SUCCEEDED.items()]
    reachable += [f"{a}>still_failed" for a in ACTION_SUCCEEDED]
    reachable += [f"{a}>{s}" for a, s in ACTION_OUTCOME.items()]
    return (
        pl.when(action.is_null())
        .then(untouched)
        .otherwise(pl.concat_str(action, after, separator=">").is_in(reachable))
    )


class RecoveryOutcome(CampaignDevice):
    """One device after the recovery decisions were applied in the outcome simulation."""

    status_before: str = pa.Field(
        isin=list(UPDATE_STATUSES), description="Update status before recovery."
    )
    action: Optional[str] = pa.Field(  # noqa: UP045
        nullable=True,
        isin=list(ACTIONS),
        description="Recovery action applied; null for a device that needed none.",
    )
    reason_code: Optional[str] = pa.Field(  # noqa: UP045
        nullable=True,
        isin=list(REASON_CODES),
        description="Code of the policy rule that decided; null without an action.",
    )
    success_probability: Optional[float] = pa.Field(  # noqa: UP045
        nullable=True,
        in_range={"min_value": 0, "max_value": 1},
        description="Simulated odds that a retry or rollback works; null for other actions.",
    )
    status_after: str = pa.Field(
        isin=list(OUTCOME_STATUSES), description="Status once the decision was applied (simulated)."
    )

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def outcome_follows_action(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Retries recover or stay failed, rollbacks roll back or stay failed, and so on."""
        return data.lazyframe.select(_outcome_follows_action())

    @pa.dataframe_check
    def odds_only_for_attempts(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Only actions that touch the device (retry, rollback) have odds of working."""
        attempt = pl.col("action").is_in(list(ACTION_SUCCEEDED)).fill_null(False)
        return data.lazyframe.select(attempt == pl.col("success_probability").is_not_null())


_SHARE = {"in_range": {"min_value": 0, "max_value": 1}}
REPORT_SCOPES: tuple[str, ...] = (*REGIONS, "all")


class FailureCluster(pa.DataFrameModel):
    """An upgrade path (model, firmware from -> to) in a region, ranked by its failures."""

    region: str = pa.Field(isin=list(REGIONS), description="Deployment region.")
    model: str = pa.Field(isin=list(MODELS), description="Device model of the upgrade path.")
    firmware_from: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version the upgrade path starts from (x.y.z).",
    )
    firmware_to: str = pa.Field(
        str_matches=FIRMWARE_PATTERN,
        description="Firmware version the upgrade path goes to (x.y.z).",
    )
    devices: int = pa.Field(ge=1, description="Devices of the region on this upgrade path.")
    failed: int = pa.Field(ge=0, description="Devices on the path whose update failed.")
    partial: int = pa.Field(
        ge=0, description="Devices on the path with a partial (uncommitted) update."
    )
    failures: int = pa.Field(ge=0, description="failed + partial.")
    failure_rate: float = pa.Field(**_SHARE, description="failures / devices (0-1).")
    share_of_region_failures: float = pa.Field(
        **_SHARE, description="This path's share of the region's failures (0-1)."
    )
    cluster_rank: int = pa.Field(ge=1, description="RANK() by failures within the region.")
    fleet_rate_rank: int = pa.Field(ge=1, description="DENSE_RANK() by failure rate, fleet-wide.")

    class Config:
        strict = True
        coerce = False


class FailureTelemetry(pa.DataFrameModel):
    """How failures spread over battery and signal bands in a region."""

    region: str = pa.Field(isin=list(REGIONS), description="Deployment region.")
    measure: str = pa.Field(
        isin=["battery_pct", "signal_dbm"],
        description="Reading the bands cut: battery_pct (%) or signal_dbm (dBm).",
    )
    band_order: int = pa.Field(ge=1, description="Position of the band, 1 = lowest readings.")
    band: str = pa.Field(
        str_length={"min_value": 1}, description="Band label with its range in the measure's unit."
    )
    devices: int = pa.Field(
        ge=0, description="Devices of the region whose reading falls in the band."
    )
    failed: int = pa.Field(ge=0, description="Devices in the band whose update failed.")
    partial: int = pa.Field(
        ge=0, description="Devices in the band with a partial (uncommitted) update."
    )
    failure_rate: float = pa.Field(
        **_SHARE,
        nullable=True,
        description="(failed + partial) / devices (0-1); null for an empty band.",
    )
    share_of_region_failures: float = pa.Field(
        **_SHARE, description="The band's share of the region's failures (0-1)."
    )

    class Config:
        strict = True
        coerce = False


class TriageQueueEntry(pa.DataFrameModel):
    """One reason code of a region's manual-triage queue, from quarantine or from recovery."""

    region: str = pa.Field(isin=list(REGIONS), description="Deployment region.")
    source: str = pa.Field(
        isin=["quarantine", "recovery"],
        description="quarantine (broke the data contract) or recovery (sent to manual triage).",
    )
    reason_code: str = pa.Field(
        str_length={"min_value": 1},
        description="column:rule code (quarantine) or policy reason code (recovery).",
    )
    records: int = pa.Field(
        ge=1, description="Records of the region and source with this reason code."
    )
    queue_records: int = pa.Field(ge=1, description="Records of the region's queue from source.")
    share_of_queue: float = pa.Field(**_SHARE, description="records / queue_records (0-1).")
    reason_rank: int = pa.Field(
        ge=1, description="RANK() of the code by records within region and source; 1 = most."
    )

    class Config:
        strict = True
        coerce = False


class CampaignReportRow(pa.DataFrameModel):
    """A region's campaign: running or halted, the numbers behind it and what it holds back."""

    region: str = pa.Field(isin=list(REGIONS), unique=True, description="Deployment region.")
    campaign: str = pa.Field(isin=list(CAMPAIGN_STATES), description="running or halted.")
    attempted: int = pa.Field(ge=0, description="Devices past pending: success, partial, failed.")
    failures: int = pa.Field(ge=0, description="Attempted devices that did not succeed.")
    failure_rate: float = pa.Field(**_SHARE, description="failures / attempted (0-1).")
    abort_failure_rate: float = pa.Field(
        **_SHARE, description="Policy: halt once this share of attempted updates failed (0-1)."
    )
    abort_min_attempted: int = pa.Field(
        ge=1, description="Policy: the abort rule applies from this many attempted devices."
    )
    held_devices: int = pa.Field(
        ge=0, description="Devices whose update or retry the halt holds back."
    )
    summary: str = pa.Field(
        str_length={"min_value": 1},
        description="The campaign's state and numbers in one readable line.",
    )

    class Config:
        strict = True
        coerce = False


class StatusCount(pa.DataFrameModel):
    """Devices per status before and after recovery, per region and fleet-wide ('all')."""

    region: str = pa.Field(
        isin=list(REPORT_SCOPES), description="Deployment region, or 'all' for the whole fleet."
    )
    phase: str = pa.Field(isin=["before", "after"], description="before or after recovery.")
    status: str = pa.Field(
        isin=list(dict.fromkeys((*UPDATE_STATUSES, *OUTCOME_STATUSES))),
        description="Device status in that phase.",
    )
    devices: int = pa.Field(ge=1, description="Devices with this status.")
    share: float = pa.Field(
        **_SHARE, description="devices / devices of the region in the phase (0-1)."
    )

    class Config:
        strict = True
        coerce = False


# --- Telemetry from the field (issue 11): landed events and dead letters --------------------
# Appended in one block. The allowed regions and models default to the fleet vocabulary above;
# `telemetry_event_schema` builds the contract for a configured fleet.

DEAD_LETTER_RAW_MAX_CHARS = 1024  # `raw` keeps at most this many characters of the input


_EVENT_DESCRIPTIONS: Mapping[str, str] = {
    "record_id": "63 bits of the XXH3-64 of the event's V2 payload: stable across re-ingestion, "
    "and the duplicate identity (same device, time and payload).",
    "partition_key": "The date x region partition (Dagster key `YYYY-MM-DD|region`) of the row.",
    "ts": "When the device took the reading (UTC).",
    "event_date": "UTC date of `ts`: the lake's date partition.",
    "site": "Installation site, when the agent reports it (V2); null otherwise.",
    "hardware_rev": "Board revision, when the agent reports it (V2); null otherwise.",
    "battery_voltage_v": "Cell voltage in volts; null from V1 agents, which do not send it.",
    "boot_attempts": "Boots of the uncommitted new image; null from V1 agents.",
    "schema_version": "Wire format the agent sent: 1 (legacy, upcast) or 2.",
    "source_file": "Landed file the event came in.",
    "line_number": "1-based physical line of the file (for Parquet the 1-based row).",
    "ingested_at": "When the event was ingested (UTC).",
}


def telemetry_event_schema(
    regions: tuple[str, ...] = REGIONS, models: tuple[str, ...] = MODELS
) -> pa.DataFrameSchema:
    """Contract of `telemetry_events`: V2-shaped readings with strict types, bounds from
    BOUNDS, allowed values of the configured fleet. Fields V1 agents do not send are NULL."""

    def described(name: str, column: pa.Column) -> pa.Column:
        fleet = FLEET_SCHEMA.columns.get(name)
        text = _EVENT_DESCRIPTIONS.get(name) or (fleet.description if fleet else None)
        return pa.Column(**{**column.properties, "description": text}) if text else column

    def reading(column: str, dtype: type, nullable: bool = False) -> pa.Column:
        return pa.Column(dtype, pa.Check.in_range(**_in_bounds(column)), nullable=nullable)

    columns = {
        "record_id": pa.Column(pl.Int64, pa.Check.ge(0), unique=True),
        "partition_key": pa.Column(pl.String, pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}\|")),
        "device_id": pa.Column(pl.String, pa.Check.str_matches(DEVICE_ID_PATTERN)),
        "region": pa.Column(pl.String, pa.Check.isin(list(regions))),
        "ts": pa.Column(pl.Datetime("us", "UTC")),
        "event_date": pa.Column(pl.Date),
        "model": pa.Column(pl.String, pa.Check.isin(list(models))),
        "site": pa.Column(pl.String, nullable=True),
        "hardware_rev": pa.Column(pl.String, pa.Check.isin(list(HARDWARE_REVS)), nullable=True),
        "firmware_from": pa.Column(pl.String, pa.Check.str_matches(FIRMWARE_PATTERN)),
        "firmware_to": pa.Column(pl.String, pa.Check.str_matches(FIRMWARE_PATTERN)),
        "update_status": pa.Column(pl.String, pa.Check.isin(list(UPDATE_STATUSES))),
        "failure_kind": pa.Column(pl.String, pa.Check.isin(list(FAILURE_KINDS)), nullable=True),
        "commit_state": pa.Column(pl.String, pa.Check.isin(list(COMMIT_STATES)), nullable=True),
        "battery_pct": reading("battery_pct", pl.Float64),
        "battery_voltage_v": reading("battery_voltage_v", pl.Float64, nullable=True),
        "temperature_c": reading("temperature_c", pl.Float64),
        "signal_dbm": reading("signal_dbm", pl.Int64),
        "retry_count": reading("retry_count", pl.Int64),
        "boot_attempts": reading("boot_attempts", pl.Int64, nullable=True),
        "schema_version": pa.Column(pl.Int8, pa.Check.isin([1, 2])),
        "source_file": pa.Column(pl.String),
        "line_number": pa.Column(pl.Int64, pa.Check.ge(1)),
        "ingested_at": pa.Column(pl.Datetime("us", "UTC")),
    }
    return pa.DataFrameSchema(
        {name: described(name, column) for name, column in columns.items()},
        strict=True,
        name="TelemetryEvent",
    )


TELEMETRY_EVENT_SCHEMA: pa.DataFrameSchema = telemetry_event_schema()


class DeadLetter(pa.DataFrameModel):
    """A line (or Parquet row, or whole file) of a landed file that could not become an event,
    with one reason code per broken rule (`reasons`; `reason` is the first of them)."""

    record_id: int = pa.Field(
        ge=0, unique=True, description="From (file hash, line number), or the message identity."
    )
    partition_key: str = pa.Field(str_matches=r"^[0-9a-f]{16}$", description="Landing batch.")
    source_file: str = pa.Field(
        str_length={"min_value": 1}, description="Landed file (name) the line came in."
    )
    source_sha256: str = pa.Field(
        str_matches=r"^[0-9a-f]{64}$", description="SHA-256 of the file's content: its identity."
    )
    line_number: int = pa.Field(ge=0, description="1-based physical line; 0 = the whole file.")
    raw: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True,
        str_length={"max_value": DEAD_LETTER_RAW_MAX_CHARS},
        description=f"The original text, truncated to {DEAD_LETTER_RAW_MAX_CHARS} characters.",
    )
    reason: str = pa.Field(
        str_matches=r"^[a-z0-9_]+:[a-z0-9_]+$",
        description="First broken rule, as field:rule (json:malformed, ts:unparsable, ...).",
    )
    reasons: list[str] = pa.Field(description="Every broken rule, one code each.")
    ingested_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="When the line was ingested (UTC)."
    )
    # Stream messages (MQTT, `sentinel consume`): where they were published and their identity.
    topic: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True, description="MQTT topic of a streamed message; null for landed files."
    )
    message_id: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True,
        str_matches=r"^[0-9a-f]{16}$",
        description="Identity of a streamed message (MD5 of topic and payload); null for files.",
    )

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def reason_is_first_of_reasons(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """`reason` is the first code of `reasons` (so there is at least one)."""
        return data.lazyframe.select(pl.col("reasons").list.first() == pl.col("reason"))


DEAD_LETTER_SCHEMA: pa.DataFrameSchema = DeadLetter.to_schema()

# --- Telemetry over time (issue 12): grid, anomalies, daily statistics, star schema ---------
# Appended in one block. `sentinel_assets.timeseries` computes these; column names carry units.

TIMESERIES_VALUES: tuple[str, ...] = (
    "battery_pct",
    "battery_voltage_v",
    "temperature_c",
    "signal_dbm",
)
ANOMALY_RULES: tuple[str, ...] = (
    "hot_low_battery",
    "voltage_sag",
    "signal_collapse",
    "temperature_zscore",
)
# Daily statistics of each value: (column suffix, what it is).
DAILY_STATISTICS: tuple[tuple[str, str], ...] = (
    ("min", "minimum"),
    ("max", "maximum"),
    ("mean", "mean"),
    ("p05", "5th percentile (linear)"),
    ("p50", "median (linear)"),
    ("p95", "95th percentile (linear)"),
)
DEFAULT_WINDOW_LABELS: tuple[str, ...] = ("1h", "24h")
_TS = pl.Datetime("us", "UTC")
_VALUE_TEXT: Mapping[str, str] = {
    "battery_pct": "battery charge in %",
    "battery_voltage_v": "cell voltage in V (NULL where only V1 agents reported)",
    "temperature_c": "device temperature in °C",
    "signal_dbm": "signal strength in dBm",
}


def _schema(name: str, columns: Mapping[str, tuple[pa.Column, str]], checks=None):
    """A strict contract whose every column carries its description."""
    return pa.DataFrameSchema(
        {
            col: pa.Column(**{**column.properties, "description": text})
            for col, (column, text) in columns.items()
        },
        strict=True,
        name=name,
        checks=checks or [],
    )


def _key_columns() -> dict[str, tuple[pa.Column, str]]:
    return {
        "region": (pa.Column(pl.String, pa.Check.isin(list(REGIONS))), "Deployment region."),
        "device_id": (
            pa.Column(pl.String, pa.Check.str_matches(DEVICE_ID_PATTERN)),
            "Device identifier (unique within its region).",
        ),
    }


def _value(column: str, nullable: bool = True) -> pa.Column:
    return pa.Column(pl.Float64, pa.Check.in_range(**_in_bounds(column)), nullable=nullable)


def _one_state(data: pa.PolarsData) -> pl.LazyFrame:
    """Every slot is exactly one of measured, interpolated or outage."""
    flags = ["is_measured", "is_interpolated", "is_outage"]
    return data.lazyframe.select(pl.sum_horizontal(*flags) == 1)


def _outage_has_no_values(data: pa.PolarsData) -> pl.LazyFrame:
    """An outage slot carries no value; a measured slot has at least one reading."""
    return data.lazyframe.select(
        (~pl.col("is_outage") | pl.col("battery_pct").is_null())
        & (pl.col("is_measured") == (pl.col("readings_in_slot") > 0))
    )


def device_timeseries_schema(
    window_labels: tuple[str, ...] = DEFAULT_WINDOW_LABELS,
) -> pa.DataFrameSchema:
    """Contract of `device_timeseries` for the configured rolling windows."""
    columns: dict[str, tuple[pa.Column, str]] = {
        **_key_columns(),
        "event_date": (pa.Column(pl.Date), "UTC date of the slot: the date partition."),
        "slot_ts": (pa.Column(_TS), "Start of the grid slot [slot_ts, slot_ts + interval), UTC."),
        "readings_in_slot": (pa.Column(pl.Int64, pa.Check.ge(0)), "Real readings in the slot."),
        "is_measured": (pa.Column(pl.Boolean), "The slot's values are means of real readings."),
        "is_interpolated": (
            pa.Column(pl.Boolean),
            "No reading in the slot; values interpolated linearly (by time) between the real "
            "readings around it, which are at most max_interpolation_gap apart.",
        ),
        "is_outage": (
            pa.Column(pl.Boolean),
            "No reading in the slot and the gap around it is longer than "
            "max_interpolation_gap (or open): values NULL, never bridged.",
        ),
        "gap_start_ts": (
            pa.Column(_TS, nullable=True),
            "For an empty slot: the last real reading before it (NULL if none, or measured).",
        ),
        "gap_end_ts": (
            pa.Column(_TS, nullable=True),
            "For an empty slot: the first real reading after it (NULL if none, or measured).",
        ),
        "gap_minutes": (
            pa.Column(pl.Float64, pa.Check.ge(0), nullable=True),
            "gap_end_ts - gap_start_ts in minutes (the gap the slot lies in).",
        ),
        "battery_pct": (_value("battery_pct"), "Battery charge in % (slot mean or interpolated)."),
        "battery_voltage_v": (
            _value("battery_voltage_v"),
            "Cell voltage in V; interpolated between the nearest readings that carry it, NULL "
            "where only V1 agents (which do not send it) reported.",
        ),
        "temperature_c": (_value("temperature_c"), "Device temperature in °C."),
        "temperature_f": (
            pa.Column(pl.Float64, nullable=True),
            "Device temperature in °F (from temperature_c).",
        ),
        "signal_dbm": (_value("signal_dbm"), "Signal strength in dBm (Float64: interpolated)."),
    }
    for label in window_labels:
        columns[f"readings_{label}"] = (
            pa.Column(pl.Int64, pa.Check.ge(0)),
            f"Real readings in the trailing {label} window [slot end - {label}, slot end).",
        )
        for value in TIMESERIES_VALUES:
            columns[f"{value}_mean_{label}"] = (
                pa.Column(pl.Float64, nullable=True),
                f"Mean {_VALUE_TEXT[value]} over the real readings of the trailing {label}.",
            )
        columns[f"battery_drain_pct_per_h_{label}"] = (
            pa.Column(pl.Float64, nullable=True),
            f"Battery drain in % per hour over the trailing {label}: minus the least-squares "
            "slope of battery_pct over time (positive = draining; NULL under 2 readings).",
        )
    return _schema(
        "DeviceTimeseries",
        columns,
        checks=[
            pa.Check(_one_state, name="one_state", error="exactly one of the three flags"),
            pa.Check(_outage_has_no_values, name="flags_match_values"),
        ],
    )


def telemetry_anomaly_schema() -> pa.DataFrameSchema:
    episode = "within the partition's day"
    return _schema(
        "TelemetryAnomaly",
        {
            **_key_columns(),
            "event_date": (pa.Column(pl.Date), "UTC date of the partition."),
            "rule": (pa.Column(pl.String, pa.Check.isin(list(ANOMALY_RULES))), "Rule broken."),
            "thresholds": (
                pa.Column(pl.String, pa.Check.str_length(min_value=1)),
                "The rule's condition with the thresholds in force, as text.",
            ),
            "episode_start_ts": (pa.Column(_TS), f"First reading of the episode {episode}."),
            "episode_end_ts": (pa.Column(_TS), f"Last reading of the episode {episode}."),
            "duration_minutes": (
                pa.Column(pl.Float64, pa.Check.ge(0)),
                "episode_end_ts - episode_start_ts in minutes.",
            ),
            "readings": (pa.Column(pl.Int64, pa.Check.ge(1)), "Readings breaking the rule."),
            "started_before_day": (
                pa.Column(pl.Boolean),
                "The episode began on the previous day (its earlier part is there).",
            ),
            "continues_after_day": (
                pa.Column(pl.Boolean),
                "The next reading (next day) still breaks the rule: the episode goes on.",
            ),
            "peak_temperature_c": (_value("temperature_c"), "Highest °C of the episode."),
            "min_battery_pct": (_value("battery_pct"), "Lowest battery % of the episode."),
            "min_battery_voltage_v": (_value("battery_voltage_v"), "Lowest cell voltage (V)."),
            "min_signal_dbm": (_value("signal_dbm"), "Weakest signal (dBm) of the episode."),
            "peak_abs_temperature_zscore": (
                pa.Column(pl.Float64, nullable=True),
                "Largest |temperature z-score| of the episode (NULL: too few readings).",
            ),
        },
    )


def _value_statistics() -> dict[str, tuple[pa.Column, str]]:
    return {
        f"{value}_{suffix}": (
            pa.Column(pl.Float64, nullable=True),
            f"{what.capitalize()} of {_VALUE_TEXT[value]} over the day's real readings.",
        )
        for value in TIMESERIES_VALUES
        for suffix, what in DAILY_STATISTICS
    }


def _coverage_columns() -> dict[str, tuple[pa.Column, str]]:
    share = pa.Check.in_range(0, 1)
    return {
        "readings_received": (pa.Column(pl.Int64, pa.Check.ge(0)), "Real readings that day."),
        "readings_expected": (
            pa.Column(pl.Int64, pa.Check.ge(0)),
            "Readings a full day would have: one per grid slot.",
        ),
        "slots": (pa.Column(pl.Int64, pa.Check.ge(0)), "Grid slots of the day."),
        "slots_measured": (pa.Column(pl.Int64, pa.Check.ge(0)), "Slots with a real reading."),
        "slots_interpolated": (pa.Column(pl.Int64, pa.Check.ge(0)), "Slots interpolated."),
        "slots_outage": (pa.Column(pl.Int64, pa.Check.ge(0)), "Slots in an outage (NULL)."),
        "coverage": (pa.Column(pl.Float64, share), "slots_measured / slots (0-1)."),
        "interpolated_share": (pa.Column(pl.Float64, share), "slots_interpolated / slots (0-1)."),
        "outage_share": (pa.Column(pl.Float64, share), "slots_outage / slots (0-1)."),
    }


def daily_device_stats_schema() -> pa.DataFrameSchema:
    return _schema(
        "DailyDeviceStats",
        {
            **_key_columns(),
            "event_date": (pa.Column(pl.Date), "UTC day."),
            **_coverage_columns(),
            "anomaly_episodes": (
                pa.Column(pl.Int64, pa.Check.ge(0)),
                "Anomaly episodes (parts within the day) of the device, all rules.",
            ),
            **_value_statistics(),
        },
    )


def daily_region_stats_schema() -> pa.DataFrameSchema:
    return _schema(
        "DailyRegionStats",
        {
            "region": (pa.Column(pl.String, pa.Check.isin(list(REGIONS))), "Deployment region."),
            "event_date": (pa.Column(pl.Date), "UTC day."),
            "devices": (pa.Column(pl.Int64, pa.Check.ge(1)), "Devices with a reading that day."),
            **_coverage_columns(),
            "anomaly_episodes": (pa.Column(pl.Int64, pa.Check.ge(0)), "Episodes, all rules."),
            "devices_with_anomaly": (
                pa.Column(pl.Int64, pa.Check.ge(0)),
                "Devices with at least one anomaly episode that day.",
            ),
            **{
                f"episodes_{rule}": (pa.Column(pl.Int64, pa.Check.ge(0)), f"Episodes of {rule}.")
                for rule in ANOMALY_RULES
            },
            "anomaly_rate": (
                pa.Column(pl.Float64, pa.Check.in_range(0, 1)),
                "devices_with_anomaly / devices (0-1); above max_anomaly_rate raises an alert.",
            ),
            "max_anomaly_rate": (
                pa.Column(pl.Float64, pa.Check.in_range(0, 1)),
                "Setting: the alert limit of anomaly_rate in force.",
            ),
            **_value_statistics(),
        },
    )


def dim_device_schema() -> pa.DataFrameSchema:
    return _schema(
        "DimDevice",
        {
            "device_key": (
                pa.Column(pl.Int64, pa.Check.ge(1), unique=True),
                "Surrogate key of the device version (rebuilt with the table).",
            ),
            **_key_columns(),
            "model": (pa.Column(pl.String, pa.Check.isin(list(MODELS))), "Device model."),
            "site": (pa.Column(pl.String, nullable=True), "Installation site (V2 agents)."),
            "hardware_rev": (pa.Column(pl.String, nullable=True), "Board revision (V2 agents)."),
            "firmware_version": (
                pa.Column(pl.String, pa.Check.str_matches(FIRMWARE_PATTERN)),
                "Firmware the device runs: firmware_to once its update succeeded, else "
                "firmware_from.",
            ),
            "valid_from": (pa.Column(_TS), "The version is valid from this time (inclusive)."),
            "valid_to": (
                pa.Column(_TS, nullable=True),
                "... to this time (exclusive): the next version's valid_from; NULL = current.",
            ),
            "is_current": (pa.Column(pl.Boolean), "The device's current version (valid_to NULL)."),
        },
    )


def dim_date_schema() -> pa.DataFrameSchema:
    return _schema(
        "DimDate",
        {
            "date_key": (
                pa.Column(pl.Int32, pa.Check.ge(19700101), unique=True),
                "YYYYMMDD of the UTC day.",
            ),
            "date": (pa.Column(pl.Date, unique=True), "The UTC day."),
            "year": (pa.Column(pl.Int32), "Calendar year."),
            "month": (pa.Column(pl.Int8, pa.Check.in_range(1, 12)), "Month (1-12)."),
            "day": (pa.Column(pl.Int8, pa.Check.in_range(1, 31)), "Day of the month."),
            "iso_week": (pa.Column(pl.Int8, pa.Check.in_range(1, 53)), "ISO 8601 week."),
            "iso_weekday": (pa.Column(pl.Int8, pa.Check.in_range(1, 7)), "1 = Monday ... 7."),
            "is_weekend": (pa.Column(pl.Boolean), "Saturday or Sunday."),
        },
    )


def fact_telemetry_schema() -> pa.DataFrameSchema:
    return _schema(
        "FactTelemetry",
        {
            "record_id": (
                pa.Column(pl.Int64, pa.Check.ge(0), unique=True),
                "The reading's telemetry_events record_id.",
            ),
            "device_key": (
                pa.Column(pl.Int64, pa.Check.ge(1)),
                "dim_device version in force at ts.",
            ),
            "date_key": (pa.Column(pl.Int32), "dim_date key of the UTC day of ts."),
            **_key_columns(),
            "ts": (pa.Column(_TS), "When the device took the reading (UTC)."),
            "valid_until": (
                pa.Column(_TS, nullable=True),
                "Time of the device's next reading (the state holds until then); NULL for its "
                "last reading.",
            ),
            "update_status": (
                pa.Column(pl.String, pa.Check.isin(list(UPDATE_STATUSES))),
                "Update status reported.",
            ),
            "battery_pct": (_value("battery_pct", nullable=False), "Battery charge in %."),
            "battery_voltage_v": (_value("battery_voltage_v"), "Cell voltage in V (V2 agents)."),
            "temperature_c": (_value("temperature_c", nullable=False), "Temperature in °C."),
            "temperature_f": (pa.Column(pl.Float64), "Temperature in °F."),
            "signal_dbm": (_value("signal_dbm", nullable=False), "Signal strength in dBm."),
        },
    )


TIMESERIES_CONTRACTS: Mapping[str, pa.DataFrameSchema] = {
    "device_timeseries": device_timeseries_schema(),
    "telemetry_anomalies": telemetry_anomaly_schema(),
    "daily_device_stats": daily_device_stats_schema(),
    "daily_region_stats": daily_region_stats_schema(),
    "dim_device": dim_device_schema(),
    "dim_date": dim_date_schema(),
    "fact_telemetry": fact_telemetry_schema(),
}

# Every asset's contract, by asset name: what its checks and its catalog columns come from.
ASSET_CONTRACTS: Mapping[str, pa.DataFrameSchema] = {
    "raw_fleet": FLEET_SCHEMA,
    "corrupted_fleet": CORRUPTED_FLEET_SCHEMA,
    "chaos_ledger": CHAOS_LEDGER_SCHEMA,
    "sanitized_fleet": FLEET_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "recovery_decisions": RecoveryDecision.to_schema(),
    "regional_rank": RegionalRank.to_schema(),
    "campaign_status": CampaignStatus.to_schema(),
    "recovery_outcomes": RecoveryOutcome.to_schema(),
    "failure_clusters": FailureCluster.to_schema(),
    "failure_telemetry": FailureTelemetry.to_schema(),
    "triage_queue": TriageQueueEntry.to_schema(),
    "campaign_report": CampaignReportRow.to_schema(),
    "status_before_after": StatusCount.to_schema(),
    "telemetry_events": TELEMETRY_EVENT_SCHEMA,
    "dead_letters": DEAD_LETTER_SCHEMA,
    **TIMESERIES_CONTRACTS,
}
