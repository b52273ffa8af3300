"""An event's `record_id`: a stable 63-bit hash of its V2 payload, the lake's duplicate identity.

The payload is every `schema.EVENT_VALUE_COLUMNS` value as text, joined by U+001F, NULL as
U+2400, the timestamp as epoch microseconds (UTC). The id is XXH3-64 (seed 0) of that text with
the top bit cleared, so it fits Int64. XXH3 is a published, frozen algorithm, computed here
vectorized by `polars-hash` (the same value on every machine and Polars release), so:

* the same content has the same id on every machine, release and re-ingestion, and a V1 record
  and its V2 resend share it (both are hashed after the upcast);
* two different readings of one device at one timestamp get different ids (both are kept);
* two of n events share an id with a chance of about n^2 / 2^64 (5e-6 for ten million).

Lakes written under an earlier scheme (`SCHEME` differs, or no scheme recorded: ids were the
MD5 of a payload with ISO timestamps, ~40x slower to compute) are migrated in place by
`telemetry.lake.ensure_record_ids`: each part's ids are recomputed from its own values.
"""

from __future__ import annotations

import polars as pl
import polars_hash  # noqa: F401 - registers the `nchash` expression namespace

from sentinel_assets.telemetry.schema import EVENT_VALUE_COLUMNS

SCHEME = "xxh3_64(payload: epoch-us ts, U+001F separated, U+2400 null)"
_NULL = "\u2400"
_ID_MASK = (1 << 63) - 1


def _as_text(name: str) -> pl.Expr:
    value = pl.col(name).dt.epoch("us") if name == "ts" else pl.col(name)
    return value.cast(pl.String).fill_null(_NULL)


def payload() -> pl.Expr:
    """The hashed text of an event (its values, in `EVENT_VALUE_COLUMNS` order)."""
    return pl.concat_str([_as_text(name) for name in EVENT_VALUE_COLUMNS], separator="\x1f")


def record_id() -> pl.Expr:
    """`record_id` of V2-shaped typed event rows (`telemetry_events` values)."""
    hashed = payload().nchash.xxh3_64()
    return (hashed & _ID_MASK).cast(pl.Int64).alias("record_id")
