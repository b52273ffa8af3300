"""Schema versions: detect V1 or V2 per record, upcast V1 to V2, type and validate.

Detection uses the fields a record sets (non-empty): `ts` and `battery_pct` -> V2;
`timestamp` and `battery` -> V1; neither or both -> `schema:unknown_version`. An optional
`schema_version` must be 2 on a V2 record (else `schema_version:mismatch`).

V1 -> V2 conversions (nothing is invented: V2 fields V1 does not send stay NULL):

| V1 | V2 | conversion |
|---|---|---|
| `timestamp` (Unix epoch seconds, integer or decimal) | `ts` | UTC, microseconds |
| `fw_version`, `target_fw` | `firmware_from`, `firmware_to` | as is |
| `status` (`Success`, `Partial`, `Failed`, `Pending`) | `update_status` | lower case (*) |
| `battery` (fraction 0-1) | `battery_pct` | x 100 |
| `temp_f` | `temperature_c` | (F - 32) x 5 / 9, not rounded |
| `signal` | `signal_dbm` | as is (integer) |
| `retries` | `retry_count` | as is (integer) |
| - | `failure_kind`, `battery_voltage_v`, `boot_attempts`, `commit_state` | NULL |
| - | `site`, `hardware_rev` (optional V2 extras) | NULL |

(*) any other spelling of a V1 status is `status:not_allowed`.

V2 `ts` must be ISO 8601 with a UTC offset (`Z`, `+hh:mm` or `+hhmm`; the exact form is in
`telemetry.iso_time`); without one it is `ts:unparsable` (a local time cannot be placed).
Bounds come from `contracts.BOUNDS` and are checked on the V2 value (after conversion);
allowed values from `contracts` or the configured fleet (`regions`, `models`). Every broken
rule of a record is reported, in the order below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from sentinel_assets.contracts import (
    BOUNDS,
    COMMIT_STATES,
    DEVICE_ID_PATTERN,
    FAILURE_KINDS,
    FIRMWARE_PATTERN,
    HARDWARE_REVS,
    MODELS,
    REGIONS,
    UPDATE_STATUSES,
)
from sentinel_assets.telemetry.iso_time import epoch_microseconds

V1_STATUSES: dict[str, str] = {status.capitalize(): status for status in UPDATE_STATUSES}
EVENT_VALUE_COLUMNS: tuple[str, ...] = (
    "device_id",
    "region",
    "ts",
    "model",
    "site",
    "hardware_rev",
    "firmware_from",
    "firmware_to",
    "update_status",
    "failure_kind",
    "commit_state",
    "battery_pct",
    "battery_voltage_v",
    "temperature_c",
    "signal_dbm",
    "retry_count",
    "boot_attempts",
)
_US_PER_S = 1_000_000


NUMERIC_FIELDS: tuple[str, ...] = (
    "timestamp", "battery", "temp_f", "signal", "retries", "battery_pct", "battery_voltage_v",
    "temperature_c", "signal_dbm", "retry_count", "boot_attempts", "schema_version",
)  # fmt: skip


def _parsed(name: str) -> str:
    return f"#{name}"


def _parse_once() -> list[pl.Expr]:
    """Each numeric wire field cast once, and the V2 `ts` parsed once, as `#<field>`
    columns the values and the rules below share."""
    numbers = [pl.col(f).cast(pl.Float64, strict=False).alias(_parsed(f)) for f in NUMERIC_FIELDS]
    iso = (
        pl.col("ts")
        .map_batches(epoch_microseconds, return_dtype=pl.Int64)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .alias(_parsed("ts"))
    )
    return [*numbers, iso]


def _number(name: str) -> pl.Expr:
    return pl.col(_parsed(name))


def _not_a_number(name: str) -> pl.Expr:
    value = _number(name)
    return pl.col(name).is_not_null() & (value.is_null() | value.is_nan() | value.is_infinite())


def _not_an_integer(name: str) -> pl.Expr:
    value = _number(name)
    return value.is_finite() & (value != value.round())


def _epoch(name: str) -> pl.Expr:
    micros = (_number(name) * _US_PER_S).round()
    ok = micros.abs() < 2**62
    return (
        pl.when(ok).then(micros).cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )


def _iso(name: str) -> pl.Expr:
    return pl.col(_parsed(name))


def _values(v1: pl.Expr) -> dict[str, pl.Expr]:
    """Each V2 column from the V1 or the V2 field, with the V1 conversions."""

    def pick(v1_value: pl.Expr, v2_value: pl.Expr) -> pl.Expr:
        return pl.when(v1).then(v1_value).otherwise(v2_value)

    def v2_only(name: str) -> pl.Expr:
        return pl.when(v1).then(None).otherwise(pl.col(name))

    return {
        "device_id": pl.col("device_id"),
        "region": pl.col("region"),
        "ts": pick(_epoch("timestamp"), _iso("ts")),
        "model": pl.col("model"),
        "site": v2_only("site"),
        "hardware_rev": v2_only("hardware_rev"),
        "firmware_from": pick(pl.col("fw_version"), pl.col("firmware_from")),
        "firmware_to": pick(pl.col("target_fw"), pl.col("firmware_to")),
        "update_status": pick(
            pl.col("status").replace_strict(V1_STATUSES, default=None),
            pl.col("update_status"),
        ),
        "failure_kind": v2_only("failure_kind"),
        "commit_state": v2_only("commit_state"),
        "battery_pct": pick(_number("battery") * 100, _number("battery_pct")),
        "battery_voltage_v": pl.when(v1).then(None).otherwise(_number("battery_voltage_v")),
        "temperature_c": pick((_number("temp_f") - 32) * 5 / 9, _number("temperature_c")),
        "signal_dbm": pick(_number("signal"), _number("signal_dbm")).cast(pl.Int64, strict=False),
        "retry_count": pick(_number("retries"), _number("retry_count")).cast(
            pl.Int64, strict=False
        ),
        "boot_attempts": pl.when(v1)
        .then(None)
        .otherwise(_number("boot_attempts"))
        .cast(pl.Int64, strict=False),
    }


# (V1 wire field, V2 wire field, V2 column, kind): how each value is parsed and checked.
_FIELDS: tuple[tuple[str | None, str | None, str, str], ...] = (
    ("device_id", "device_id", "device_id", "text"),
    ("region", "region", "region", "text"),
    ("timestamp", None, "ts", "epoch"),
    (None, "ts", "ts", "iso"),
    ("model", "model", "model", "text"),
    (None, "site", "site", "optional_text"),
    (None, "hardware_rev", "hardware_rev", "optional_text"),
    ("fw_version", "firmware_from", "firmware_from", "text"),
    ("target_fw", "firmware_to", "firmware_to", "text"),
    ("status", "update_status", "update_status", "text"),
    (None, "failure_kind", "failure_kind", "optional_text"),
    (None, "commit_state", "commit_state", "optional_text"),
    ("battery", "battery_pct", "battery_pct", "number"),
    (None, "battery_voltage_v", "battery_voltage_v", "optional_number"),
    ("temp_f", "temperature_c", "temperature_c", "number"),
    ("signal", "signal_dbm", "signal_dbm", "integer"),
    ("retries", "retry_count", "retry_count", "integer"),
    (None, "boot_attempts", "boot_attempts", "optional_integer"),
)


def _rules(
    v1: pl.Expr, v2: pl.Expr, regions: Sequence[str], models: Sequence[str]
) -> list[tuple[pl.Expr, str]]:
    """(broken?, reason code) per rule. Wire fields are read as sent (text, by their wire
    name); converted values are the `_<column>` columns."""

    def value(column: str) -> pl.Expr:
        return pl.col(f"_{column}")

    version_tag = _number("schema_version")
    rules: list[tuple[pl.Expr, str]] = [
        (
            v2 & pl.col("schema_version").is_not_null() & (version_tag != 2).fill_null(True),
            "schema_version:mismatch",
        )
    ]
    for v1_field, v2_field, column, kind in _FIELDS:
        for version, field in ((v1, v1_field), (v2, v2_field)):
            if field is None:
                continue
            raw = pl.col(field)
            if not kind.startswith("optional"):
                rules.append((version & raw.is_null(), f"{field}:missing"))
            if kind.endswith(("number", "integer")):
                rules.append((version & _not_a_number(field), f"{field}:not_a_number"))
            if kind.endswith("integer"):
                rules.append((version & _not_an_integer(field), f"{field}:not_an_integer"))
            if kind in ("epoch", "iso"):
                parsed = _epoch(field) if kind == "epoch" else _iso(field)
                rules.append(
                    (version & raw.is_not_null() & parsed.is_null(), f"{field}:unparsable")
                )
        if column in BOUNDS:
            bounds = BOUNDS[column]
            rules.append(
                (~value(column).is_between(bounds.low, bounds.high), f"{column}:out_of_range")
            )
    rules += [
        (~value("device_id").str.contains(DEVICE_ID_PATTERN), "device_id:malformed"),
        (~value("region").is_in(list(regions)), "region:unknown"),
        (~value("model").is_in(list(models)), "model:unknown"),
        (~value("firmware_from").str.contains(FIRMWARE_PATTERN), "firmware_from:malformed"),
        (~value("firmware_to").str.contains(FIRMWARE_PATTERN), "firmware_to:malformed"),
        (
            v1 & pl.col("status").is_not_null() & value("update_status").is_null(),
            "status:not_allowed",
        ),
        (
            v2 & ~value("update_status").is_in(list(UPDATE_STATUSES)),
            "update_status:not_allowed",
        ),
        (~value("failure_kind").is_in(list(FAILURE_KINDS)), "failure_kind:not_allowed"),
        (~value("commit_state").is_in(list(COMMIT_STATES)), "commit_state:not_allowed"),
        (~value("hardware_rev").is_in(list(HARDWARE_REVS)), "hardware_rev:not_allowed"),
        (
            value("failure_kind").is_not_null() & (value("update_status") != "failed"),
            "failure_kind:set_without_failure",
        ),
        (
            value("commit_state").is_not_null() & (value("update_status") != "partial"),
            "commit_state:set_without_partial",
        ),
    ]
    return rules


def _reason_lists(flags: np.ndarray, codes: list[str]) -> pl.Series:
    """Per row of a (rows x rules) boolean matrix, the codes of its true rules, in rule
    order."""
    rows, rules = np.nonzero(flags)  # row-major: each row's rules in order
    offsets = np.zeros(len(flags) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(flags)), out=offsets[1:])
    names = pa.DictionaryArray.from_arrays(pa.array(rules, pa.int32()), pa.array(codes))
    lists = pa.ListArray.from_arrays(pa.array(offsets), names.cast(pa.string()))
    return pl.Series("reasons", lists, dtype=pl.List(pl.String))


@dataclass(frozen=True)
class Upcast:
    """A chunk's records split in two: `valid` V2-shaped typed rows (with `line_number`,
    `raw` and `schema_version` 1 or 2), and `rejected` rows with their `reasons`."""

    valid: pl.DataFrame
    rejected: pl.DataFrame  # line_number, raw, reasons (non-empty)


def upcast(
    records: pl.DataFrame,
    *,
    regions: Sequence[str] = REGIONS,
    models: Sequence[str] = MODELS,
) -> Upcast:
    """Wire records (`wire.WireChunk.records`) -> valid events and rejected rows."""
    # A wire field is "present" when it is non-empty (the wire layer makes "" NULL).
    has_v2 = pl.col("ts").is_not_null() & pl.col("battery_pct").is_not_null()
    has_v1 = pl.col("timestamp").is_not_null() & pl.col("battery").is_not_null()
    wire_ok = pl.col("wire_error").is_null()
    frame = records.with_columns(
        (wire_ok & has_v1 & ~has_v2).alias("_is_v1"), (wire_ok & has_v2 & ~has_v1).alias("_is_v2")
    )
    v1, v2 = pl.col("_is_v1"), pl.col("_is_v2")
    frame = frame.with_columns(_parse_once())
    frame = frame.with_columns(**{f"_{name}": expr for name, expr in _values(v1).items()})
    rules = _rules(v1, v2, regions, models)
    flags = [rule.fill_null(False) for rule, _ in rules]
    frame = frame.with_columns((~wire_ok | ~(v1 | v2) | pl.any_horizontal(flags)).alias("_broken"))
    # Columns are picked before rows are: filtering the whole frame would copy every column.
    valid = (
        frame.select(
            "line_number",
            "raw",
            *[pl.col(f"_{name}").alias(name) for name in EVENT_VALUE_COLUMNS],
            pl.when(v1).then(1).otherwise(2).cast(pl.Int8).alias("schema_version"),
            "_broken",
        )
        .filter(~pl.col("_broken"))
        .drop("_broken")
    )
    # Reason lists only for the rows that break something (a few per cent), from a matrix of
    # the rules' flags (one list expression per rule cost 15x more).
    broken_rows = frame.filter(pl.col("_broken"))
    matrix = broken_rows.select(flag.alias(f"_rule_{n}") for n, flag in enumerate(flags))
    codes = _reason_lists(matrix.to_numpy(), [code for _, code in rules])
    reasons = (
        pl.when(~wire_ok)
        .then(pl.concat_list(pl.col("wire_error")))
        .when(~(v1 | v2))
        .then(pl.lit(["schema:unknown_version"], dtype=pl.List(pl.String)))
        .otherwise(pl.lit(codes))
    )
    rejected = broken_rows.select("line_number", "raw", reasons.alias("reasons"))
    return Upcast(valid, rejected)
