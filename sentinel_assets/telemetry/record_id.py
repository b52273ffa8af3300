"""An event's `record_id`: a stable 63-bit hash of its V2 payload, the lake's duplicate identity.

The payload is every `schema.EVENT_VALUE_COLUMNS` value, hashed in two parts:

1. the text values (`TEXT_COLUMNS`, in that order) joined by U+001F, NULL as U+2400, hashed
   with XXH3-64 (seed 0), computed vectorized by `polars-hash`;
2. then each number (`NUMERIC_COLUMNS`, in that order) folded in as its 64 bits: the
   timestamp as epoch microseconds (UTC), integers as they are, floats as their IEEE-754 bits
   (-0.0 as 0.0), NULL as `NULL_BITS` (a NaN no valid reading holds):
   `h = splitmix64(h XOR bits)`, with the splitmix64 finalizer (S. Vigna), in NumPy;

and the top bit cleared, so it fits Int64. Both algorithms are published and frozen, so:

* the same content has the same id on every machine, release and re-ingestion, and a V1 record
  and its V2 resend share it (both are hashed after the upcast);
* two different readings of one device at one timestamp get different ids (both are kept);
* two of n events share an id with a chance of about n^2 / 2^64 (5e-6 for ten million).

Numbers are hashed as bits, not formatted as text: formatting them was half of the cost of
building events. Lakes written under an earlier scheme (`SCHEME` differs, or no scheme
recorded) are migrated in place by `telemetry.lake.ensure_record_ids`: each part's ids are
recomputed from its own values.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import polars_hash  # noqa: F401 - registers the `nchash` expression namespace

from sentinel_assets.telemetry.schema import EVENT_VALUE_COLUMNS

SCHEME = "xxh3_64(text values: U+001F separated, U+2400 null) then splitmix64(h ^ number bits)"
NUMERIC_COLUMNS: tuple[str, ...] = (
    "ts", "battery_pct", "battery_voltage_v", "temperature_c", "signal_dbm", "retry_count",
    "boot_attempts",
)  # fmt: skip
TEXT_COLUMNS: tuple[str, ...] = tuple(c for c in EVENT_VALUE_COLUMNS if c not in NUMERIC_COLUMNS)
NULL_BITS = 0x7FF8_0000_0000_2400
_NULL = "\u2400"
_ID_MASK = (1 << 63) - 1
_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)
_M1 = np.uint64(0xBF58_476D_1CE4_E5B9)
_M2 = np.uint64(0x94D0_49BB_1331_11EB)


def text_payload() -> pl.Expr:
    """The hashed text of an event's text values (in `TEXT_COLUMNS` order)."""
    return pl.concat_str([pl.col(name).fill_null(_NULL) for name in TEXT_COLUMNS], separator="\x1f")


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 output function on uint64 (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _bits(values: pl.Series) -> np.ndarray:
    """A number column's 64-bit patterns (see the module's docstring) as uint64."""
    if values.dtype == pl.Datetime:
        bits = values.dt.epoch("us").fill_null(0).to_numpy().view(np.uint64)
    elif values.dtype.is_float():
        # In NumPy -0.0 + 0.0 is 0.0 (IEEE 754); Polars keeps -0.0.
        bits = (values.cast(pl.Float64).fill_null(0.0).to_numpy() + 0.0).view(np.uint64)
    else:
        bits = values.cast(pl.Int64).fill_null(0).to_numpy().view(np.uint64)
    if values.null_count():
        bits = np.where(values.is_null().to_numpy(), np.uint64(NULL_BITS), bits)
    return bits


def record_ids(events: pl.DataFrame) -> pl.Series:
    """`record_id` of V2-shaped typed event rows (`telemetry_events` values)."""
    hashed = events.select(text_payload().nchash.xxh3_64()).to_series().to_numpy()
    with np.errstate(over="ignore"):
        for name in NUMERIC_COLUMNS:
            hashed = splitmix64(hashed ^ _bits(events[name]))
    return pl.Series("record_id", (hashed & np.uint64(_ID_MASK)).view(np.int64))
