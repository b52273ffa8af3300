"""Data contracts: the one place that says what a trustworthy record looks like.

The generator draws its values from these bounds and allowed values, the chaos injector
breaks exactly these rules, the sanitizer derives its row-level rules from these models
(`row_rules`), and the Dagster asset checks validate each asset against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Optional

import pandera.polars as pa
import polars as pl

REGIONS: tuple[str, ...] = (
    "us-east",
    "us-west",
    "eu-central",
    "eu-west",
    "ap-south",
    "ap-northeast",
    "sa-east",
    "af-south",
)
REGION_CODES: Mapping[str, str] = {
    "us-east": "USE",
    "us-west": "USW",
    "eu-central": "EUC",
    "eu-west": "EUW",
    "ap-south": "APS",
    "ap-northeast": "APN",
    "sa-east": "SAE",
    "af-south": "AFS",
}
UPDATE_STATUSES: tuple[str, ...] = ("success", "partial", "failed", "pending")
FAILURE_KINDS: tuple[str, ...] = (
    "download_timeout",
    "connection_lost",
    "out_of_storage",
    "verification_failed",
)
MODELS: tuple[str, ...] = ("gw-100", "gw-200", "sensor-s1", "sensor-s2", "cam-x3")
HARDWARE_REVS: tuple[str, ...] = ("rev-a", "rev-b", "rev-c")
ACTIONS: tuple[str, ...] = ("retry", "rollback", "defer", "manual_triage", "hold")
FAULT_KINDS: tuple[str, ...] = (
    "null",
    "type_mismatch",
    "out_of_bounds",
    "unknown_status",
    "duplicate_row",
    "malformed_device_id",
)

DEVICE_ID_PATTERN = r"^SN-[A-Z]{3}-[0-9]{8}$"
FIRMWARE_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"


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
}


def _in_bounds(column: str) -> dict[str, float]:
    bounds = BOUNDS[column]
    return {"min_value": bounds.low, "max_value": bounds.high}


def region_code(region: str) -> str:
    """Three-letter code used in device ids; raises a readable error for unknown regions."""
    validate_region(region)
    return REGION_CODES[region]


def validate_region(region: str) -> str:
    """Reject unknown regions before they reach a file path or a query."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of: {', '.join(REGIONS)}")
    return region


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule over several columns; `valid` is true for a row that keeps it."""

    column: str
    rule: str
    valid: pl.Expr


# Keyed by the name of the model's dataframe check that enforces it. Null inputs count as
# valid: the column rules already report the missing value.
CROSS_FIELD_RULES: Mapping[str, CrossFieldRule] = {
    "failure_kind_iff_failed": CrossFieldRule(
        "failure_kind",
        "set_iff_failed",
        (pl.col("update_status") == "failed") == pl.col("failure_kind").is_not_null(),
    ),
}


class FleetRecord(pa.DataFrameModel):
    """One device of the fleet mid-way through an OTA campaign (raw and sanitized fleet)."""

    record_id: int = pa.Field(ge=0, unique=True, description="Stable id of the record.")
    device_id: str = pa.Field(str_matches=DEVICE_ID_PATTERN, unique=True)
    region: str = pa.Field(isin=list(REGIONS))
    site: str = pa.Field(description="Installation site (city) of the device.")
    model: str = pa.Field(isin=list(MODELS))
    hardware_rev: str = pa.Field(isin=list(HARDWARE_REVS))
    firmware_from: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    firmware_to: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    update_status: str = pa.Field(isin=list(UPDATE_STATUSES))
    failure_kind: Optional[str] = pa.Field(  # noqa: UP045 - pandera reads Optional
        nullable=True, isin=list(FAILURE_KINDS), description="Why a failed update failed."
    )
    battery_pct: float = pa.Field(in_range=_in_bounds("battery_pct"))
    battery_voltage_v: float = pa.Field(in_range=_in_bounds("battery_voltage_v"))
    signal_dbm: int = pa.Field(in_range=_in_bounds("signal_dbm"))
    temperature_c: float = pa.Field(in_range=_in_bounds("temperature_c"))
    retry_count: int = pa.Field(in_range=_in_bounds("retry_count"))
    last_seen_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field()

    class Config:
        strict = True
        coerce = False

    @pa.dataframe_check
    def failure_kind_iff_failed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A failed update names its failure kind; no other status has one."""
        return _cross_field_check(data, "failure_kind_iff_failed")


def _cross_field_check(data: pa.PolarsData, rule: str) -> pl.LazyFrame:
    return data.lazyframe.select(CROSS_FIELD_RULES[rule].valid.fill_null(True))


FLEET_SCHEMA: pa.DataFrameSchema = FleetRecord.to_schema()
FLEET_COLUMNS: tuple[str, ...] = tuple(FLEET_SCHEMA.columns)
FLEET_DTYPES: Mapping[str, pl.DataType] = {
    name: column.dtype.type for name, column in FLEET_SCHEMA.columns.items()
}
# Numeric readings travel as text through the chaos stage, so "N/A" or "87%" can exist there.
TEXT_ENCODED_COLUMNS: tuple[str, ...] = tuple(
    name for name, dtype in FLEET_DTYPES.items() if dtype.is_numeric() and name != "record_id"
)
# Columns whose value the contract requires (chaos may blank them; the sanitizer must notice).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    name
    for name, column in FLEET_SCHEMA.columns.items()
    if not column.nullable and name != "record_id"
)


def corrupted_dtype(column: str) -> pl.DataType:
    """Storage type of a column in the corrupted fleet: numbers become text."""
    return pl.String() if column in TEXT_ENCODED_COLUMNS else FLEET_DTYPES[column]


CORRUPTED_FLEET_SCHEMA = pa.DataFrameSchema(
    {
        "record_id": pa.Column(pl.Int64, pa.Check.ge(0), unique=True, nullable=False),
        **{
            name: pa.Column(corrupted_dtype(name), nullable=True)
            for name in FLEET_COLUMNS
            if name != "record_id"
        },
    },
    strict=True,
    name="CorruptedFleet",
)

CHAOS_LEDGER_SCHEMA = pa.DataFrameSchema(
    {
        "record_id": pa.Column(pl.Int64, pa.Check.ge(0)),
        "column": pa.Column(pl.String, pa.Check.isin(list(FLEET_COLUMNS))),
        "fault_kind": pa.Column(pl.String, pa.Check.isin(list(FAULT_KINDS))),
        "injected_value": pa.Column(pl.String, nullable=True),
    },
    strict=True,
    name="ChaosLedger",
)

QUARANTINE_SCHEMA = pa.DataFrameSchema(
    {
        "partition": pa.Column(pl.String, pa.Check.isin(list(REGIONS))),
        "reasons": pa.Column(
            pl.List(pl.String),
            pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).list.len() > 0)),
        ),
        **CORRUPTED_FLEET_SCHEMA.columns,
    },
    strict=True,
    name="Quarantine",
)


class RecoveryDecision(pa.DataFrameModel):
    """What to do about one unhealthy device, and why, in words an operator can act on."""

    record_id: int = pa.Field(ge=0, unique=True)
    device_id: str = pa.Field(str_matches=DEVICE_ID_PATTERN, unique=True)
    region: str = pa.Field(isin=list(REGIONS))
    model: str = pa.Field(isin=list(MODELS))
    firmware_from: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    firmware_to: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    update_status: str = pa.Field(isin=["partial", "failed", "pending"])
    failure_kind: Optional[str] = pa.Field(nullable=True, isin=list(FAILURE_KINDS))  # noqa: UP045
    action: str = pa.Field(isin=list(ACTIONS))
    reason: str = pa.Field(str_length={"min_value": 1})
    next_attempt_at: Optional[Annotated[pl.Datetime, "us", "UTC"]] = pa.Field(  # noqa: UP045
        nullable=True
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

    region: str = pa.Field(isin=list(REGIONS))
    region_rank: int = pa.Field(ge=1)
    devices: int = pa.Field(ge=0)
    failed: int = pa.Field(ge=0)
    partial: int = pa.Field(ge=0)
    unhealthy_rate: float = pa.Field(in_range={"min_value": 0, "max_value": 1})
    quarantined: int = pa.Field(ge=0)
    quarantine_rate: float = pa.Field(in_range={"min_value": 0, "max_value": 1})
    model: str = pa.Field(isin=list(MODELS))
    firmware_from: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    firmware_to: str = pa.Field(str_matches=FIRMWARE_PATTERN)
    cluster_devices: int = pa.Field(ge=1)
    cluster_failures: int = pa.Field(ge=0)
    cluster_failure_rate: float = pa.Field(in_range={"min_value": 0, "max_value": 1})
    cluster_rank: int = pa.Field(ge=1)

    class Config:
        strict = False
        coerce = False


ASSET_CONTRACTS: Mapping[str, pa.DataFrameSchema] = {
    "raw_fleet": FLEET_SCHEMA,
    "corrupted_fleet": CORRUPTED_FLEET_SCHEMA,
    "chaos_ledger": CHAOS_LEDGER_SCHEMA,
    "sanitized_fleet": FLEET_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "recovery_decisions": RecoveryDecision.to_schema(),
    "regional_rank": RegionalRank.to_schema(),
}


@dataclass(frozen=True)
class RowRule:
    """One contract rule as a vectorized test: `violated` is true on rows that break it."""

    column: str
    rule: str
    violated: pl.Expr

    @property
    def code(self) -> str:
        return f"{self.column}:{self.rule}"


def _check_violation(column: str, check: pa.Check) -> RowRule:
    col = pl.col(column)
    stats = check.statistics
    if check.name == "in_range":
        return RowRule(
            column,
            "out_of_range",
            ~col.is_between(stats["min_value"], stats["max_value"]) | _not_finite(col),
        )
    if check.name == "greater_than_or_equal_to":
        return RowRule(column, "out_of_range", col < stats["min_value"])
    if check.name == "isin":
        return RowRule(column, "not_allowed", ~col.is_in(list(stats["allowed_values"])))
    if check.name == "str_matches":
        return RowRule(column, "malformed", ~col.str.contains(stats["pattern"]))
    raise NotImplementedError(
        f"contract check {check.name!r} on {column!r} has no row-level translation; "
        "add one in contracts._check_violation"
    )


def _not_finite(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.Float64).is_nan() | col.cast(pl.Float64).is_infinite()


def row_rules(schema: pa.DataFrameSchema = FLEET_SCHEMA) -> list[RowRule]:
    """Every rule of a contract as a row-level polars expression, in schema order.

    Expressions are null-safe: a rule whose input is null is not violated, because the
    `missing` rule of that column already reports it.
    """
    rules: list[RowRule] = []
    for name, column in schema.columns.items():
        if not column.nullable:
            rules.append(RowRule(name, "missing", pl.col(name).is_null()))
        for check in column.checks:
            rule = _check_violation(name, check)
            rules.append(RowRule(rule.column, rule.rule, rule.violated.fill_null(False)))
        if column.unique:
            first = pl.col(name).is_first_distinct() | pl.col(name).is_null()
            rules.append(RowRule(name, "duplicate", ~first))
    for check in schema.checks:
        cross = CROSS_FIELD_RULES[check.name]
        rules.append(RowRule(cross.column, cross.rule, ~cross.valid.fill_null(True)))
    return rules


@dataclass(frozen=True)
class ContractReport:
    """Outcome of validating a frame against a contract, shaped for people to read."""

    passed: bool
    rows: int
    failing_rows: int
    failure_cases: pl.DataFrame

    def failures_by_check(self) -> pl.DataFrame:
        return (
            self.failure_cases.group_by("column", "check")
            .len("failures")
            .sort("failures", descending=True)
        )


def check_contract(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ContractReport:
    """Validate lazily so every broken rule is reported, not just the first."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.with_columns(pl.col("failure_case").cast(pl.String))
        row_level = cases["index"].drop_nulls().n_unique()
        # A schema-level failure (missing column, wrong type) taints every row.
        failing = frame.height if cases["index"].null_count() else row_level
        return ContractReport(False, frame.height, failing, cases)
    return ContractReport(True, frame.height, 0, pl.DataFrame())
