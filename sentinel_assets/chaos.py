"""Chaos injector: corrupts a copy of a good fleet so we can prove the sanitizer contains it.

Each fault kind breaks one family of contract rules at a configurable rate; every injected
fault is written to a ledger (record id, column, fault kind, injected value) so the
containment of each one can be checked downstream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from sentinel_assets.contracts import (
    CHAOS_LEDGER_SCHEMA,
    FAULT_KINDS,
    PARTITION_KEY,
    RECORD_ID,
    REQUIRED_COLUMNS,
    TEXT_ENCODED_COLUMNS,
    corrupted_dtype,
)

DEFAULT_RATES: Mapping[str, float] = {
    "null": 0.01,
    "type_mismatch": 0.01,
    "out_of_bounds": 0.01,
    "unknown_status": 0.005,
    "duplicate_row": 0.005,
    "malformed_device_id": 0.005,
}

# Text that looks like a reading to a person but is not a number.
TYPE_MISMATCH_VALUES: tuple[str, ...] = ("N/A", "87%", "", "unknown", "1,5", "--", "null")
# Readings a broken sensor or encoder really sends: all outside the contract's bounds.
OUT_OF_BOUNDS_VALUES: Mapping[str, tuple[str, ...]] = {
    "battery_pct": ("250", "-5", "100.5"),
    "battery_voltage_v": ("0", "9.9", "-1.2"),
    "signal_dbm": ("40", "0", "-200"),
    "temperature_c": ("150", "-273.1", "85.5"),
    "retry_count": ("-1", "500"),
}
UNKNOWN_STATUS_LABELS: tuple[str, ...] = (
    "unknown",
    "in_progress",
    "SUCCESS",
    "succeeded",
    "rolled-back",
    "",
)

# Which columns each cell-level fault kind may hit. Applied in this order, so a later fault
# may overwrite an earlier one in the same cell; either way the cell breaks its contract.
TARGET_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "malformed_device_id": ("device_id",),
    "unknown_status": ("update_status",),
    "out_of_bounds": tuple(OUT_OF_BOUNDS_VALUES),
    "type_mismatch": TEXT_ENCODED_COLUMNS,
    "null": REQUIRED_COLUMNS,
}


def _refuse_unknown_kinds(rates: object) -> object:
    unknown = sorted(set(rates) - set(FAULT_KINDS)) if isinstance(rates, Mapping) else []
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known kinds: {', '.join(FAULT_KINDS)}")
    return rates


# One field per fault kind (not a free-form map): Dagster's config schema then lists every
# kind with its default in the Launchpad, and refuses an unknown kind when the run is launched.
FaultRates = create_model(
    "FaultRates",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    __doc__="Share of records hit by each fault kind, within [0, 1]; 0 turns a kind off.",
    __validators__={
        "refuse_unknown_kinds": model_validator(mode="before")(_refuse_unknown_kinds),
    },
    **{
        kind: (
            float,
            Field(
                default=DEFAULT_RATES.get(kind, 0.0),
                ge=0,
                le=1,
                description=f"Share of records hit by `{kind}` faults.",
            ),
        )
        for kind in FAULT_KINDS
    },
)


class ChaosPlan(BaseModel):
    """Fault-injection rates per kind, each the share of records hit, within [0, 1]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rates: FaultRates = Field(
        default_factory=FaultRates,
        description="Share of records hit per fault kind, within [0, 1]; a kind not given "
        f"keeps its default, 0 turns it off. Kinds: {', '.join(FAULT_KINDS)}.",
    )
    seed: int = Field(default=11, description="Seed of the injector (per region).")

    def rate_by_kind(self) -> dict[str, float]:
        """The rates as `inject_faults` takes them."""
        return self.rates.model_dump()


def to_corrupted_dtypes(fleet: pl.DataFrame) -> pl.DataFrame:
    """Re-encode numeric readings as text, the shape in which corrupt values can exist."""
    return fleet.with_columns(pl.col(c).cast(corrupted_dtype(c)) for c in TEXT_ENCODED_COLUMNS)


def _malformed_ids(current: pl.Series, choice: np.ndarray) -> pl.Series:
    """Mangle device ids the way field data does: case, truncation, separators, padding."""
    variants = pl.DataFrame({"id": current}).select(
        pl.concat_list(
            pl.col("id").str.to_lowercase(),
            pl.col("id").str.slice(0, 7),
            pl.col("id").str.replace_all("-", "_", literal=True),
            pl.lit(" ") + pl.col("id"),
        ).alias("variants")
    )
    return variants["variants"].list.get(pl.Series(choice), null_on_oob=True)


def _bad_values(kind: str, column: str, current: pl.Series, rng: np.random.Generator) -> pl.Series:
    k = current.len()
    if kind == "null":
        return pl.Series([None] * k, dtype=current.dtype)
    if kind == "malformed_device_id":
        return _malformed_ids(current, rng.integers(0, 4, k))
    pool = {
        "type_mismatch": TYPE_MISMATCH_VALUES,
        "unknown_status": UNKNOWN_STATUS_LABELS,
        "out_of_bounds": OUT_OF_BOUNDS_VALUES.get(column, ()),
    }[kind]
    return pl.Series(list(pool), dtype=pl.String).gather(rng.integers(0, len(pool), k))


def _inject_cells(
    frame: pl.DataFrame, kind: str, rate: float, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = np.flatnonzero(rng.random(frame.height) < rate)
    targets = TARGET_COLUMNS[kind]
    column_idx = rng.integers(0, len(targets), len(rows))
    entries = []
    replaced = []
    for i, column in enumerate(targets):  # a handful of columns, each one vectorized scatter
        hit = rows[column_idx == i]
        if not len(hit):
            continue
        values = _bad_values(kind, column, frame[column].gather(hit), rng)
        replaced.append(frame[column].clone().scatter(hit, values))
        entries.append(
            pl.DataFrame(
                {
                    RECORD_ID: frame[RECORD_ID].gather(hit),
                    PARTITION_KEY: frame[PARTITION_KEY].gather(hit),
                    "column": pl.repeat(column, len(hit), eager=True, dtype=pl.String),
                    "fault_kind": pl.repeat(kind, len(hit), eager=True, dtype=pl.String),
                    "injected_value": values.cast(pl.String),
                }
            )
        )
    return frame.with_columns(replaced), _ledger(entries)


def _inject_duplicates(
    frame: pl.DataFrame, rate: float, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = np.flatnonzero(rng.random(frame.height) < rate)
    next_id = (frame["record_id"].max() or 0) + 1 if frame.height else 0
    copies = frame[rows].with_columns(
        pl.int_range(next_id, next_id + len(rows), dtype=pl.Int64).alias("record_id")
    )
    ledger = pl.DataFrame(
        {
            RECORD_ID: copies[RECORD_ID],
            PARTITION_KEY: copies[PARTITION_KEY],
            "column": pl.repeat("device_id", len(rows), eager=True, dtype=pl.String),
            "fault_kind": pl.repeat("duplicate_row", len(rows), eager=True, dtype=pl.String),
            "injected_value": "copy of record " + frame["record_id"].gather(rows).cast(pl.String),
        }
    )
    return pl.concat([frame, copies]), _ledger([ledger])


def _ledger(entries: list[pl.DataFrame]) -> pl.DataFrame:
    empty = pl.DataFrame(
        schema={name: column.dtype.type for name, column in CHAOS_LEDGER_SCHEMA.columns.items()}
    )
    return pl.concat([empty, *entries], how="vertical")


def inject_faults(
    fleet: pl.DataFrame, rates: Mapping[str, float], *, seed: int | Sequence[int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (corrupted fleet, ledger of every injected fault); deterministic for a seed.
    Kinds missing from `rates` are off."""
    rates = {kind: float(rates.get(kind, 0.0)) for kind in FAULT_KINDS}
    rng = np.random.default_rng(seed)
    corrupted = to_corrupted_dtypes(fleet)
    ledgers = []
    for kind in TARGET_COLUMNS:
        corrupted, ledger = _inject_cells(corrupted, kind, rates[kind], rng)
        ledgers.append(ledger)
    # Duplicates come last: a copy carries its original's values, corrupt or not, so it can
    # only ever be recognised as the later of two records with one device id.
    corrupted, ledger = _inject_duplicates(corrupted, rates["duplicate_row"], rng)
    ledgers.append(ledger)
    return corrupted, pl.concat(ledgers).sort("record_id", "column", maintain_order=True)
