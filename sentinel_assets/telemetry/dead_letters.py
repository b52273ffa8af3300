"""Dead letters: what could not become an event, why (one reason code per broken rule), and
where it came from. Nothing is dropped silently: every data line of a landed file is an event,
a duplicate of one, or a dead letter.

Reason codes are `<scope>:<rule>`:

* whole file (`line_number` 0, the file is moved aside): `file:empty`, `file:binary` (a NUL
  byte: not a text file), `file:unknown_format` (not .csv/.jsonl/.ndjson/.parquet[.gz]),
  `file:unreadable` (I/O), `gzip:corrupt` (truncated or not gzip), `csv:bad_header` (also a
  header over `wire.MAX_CSV_COLUMNS`), `parquet:unreadable`; `file:line_too_long` is only in
  batches ingested before a line without a break became one `line:too_long` dead letter;
* one MQTT message (`telemetry.envelope`): `topic:outside_layout`, `payload:empty`,
  `region:topic_mismatch`; whole stream batch: `stream:bad_envelope`;
* one line: `encoding:invalid_utf8`, `line:too_long` (over `wire.MAX_LINE_BYTES`),
  `json:malformed`, `json:not_an_object`, `csv:field_count`, `schema:unknown_version`,
  `schema_version:mismatch`;
* one field (named as on the wire, so `battery:not_a_number` for V1, `battery_pct:...` for
  V2; bounds are checked after the upcast, on the V2 column): `<field>:missing`,
  `:not_a_number`, `:not_an_integer`, `:unparsable` (timestamps), `:out_of_range`,
  `:malformed` (device id and firmware patterns), `:not_allowed`, and `region:unknown` /
  `model:unknown` for a region or model outside the configured fleet; cross-field:
  `failure_kind:set_without_failure`, `commit_state:set_without_partial`.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from sentinel_assets.contracts import DEAD_LETTER_RAW_MAX_CHARS, DEAD_LETTER_SCHEMA
from sentinel_assets.telemetry.local_duckdb import thread_connection

FILE_REASONS: tuple[str, ...] = (
    "file:empty",
    "file:binary",
    "file:unknown_format",
    "file:line_too_long",
    "file:unreadable",
    "gzip:corrupt",
    "csv:bad_header",
    "parquet:unreadable",
    "stream:bad_envelope",
)
LINE_REASONS: tuple[str, ...] = (
    "encoding:invalid_utf8",
    "line:too_long",
    "json:malformed",
    "json:not_an_object",
    "csv:field_count",
    "schema:unknown_version",
    "schema_version:mismatch",
    "topic:outside_layout",
    "payload:empty",
    "region:topic_mismatch",
)
DEAD_LETTER_COLUMNS: tuple[str, ...] = tuple(DEAD_LETTER_SCHEMA.columns)
_ID_MASK = (1 << 63) - 1


def stable_ids(keys: pl.Series) -> pl.Series:
    """A 63-bit id per key: the first 8 bytes of its MD5 (little-endian) without the sign
    bit, so stable across processes, versions and machines (unlike Polars' `hash`);
    computed in DuckDB, vectorized, in input order."""
    frame = pl.DataFrame({"key": keys.cast(pl.String)})
    conn = thread_connection()
    conn.register("keys_view", frame)
    try:
        ids = conn.sql(
            f"SELECT (md5_number_upper(key) & {_ID_MASK})::BIGINT AS id FROM keys_view"
        ).pl()
    finally:
        conn.unregister("keys_view")
    return ids["id"].alias("record_id")


def truncate_raw(raw: pl.Expr) -> pl.Expr:
    return raw.str.slice(0, DEAD_LETTER_RAW_MAX_CHARS)


def dead_letter_frame(
    rejected: pl.DataFrame,
    *,
    source_file: str,
    source_sha256: str,
    ingested_at: datetime,
) -> pl.DataFrame:
    """Dead letters from rows with `line_number`, `raw` and a non-empty `reasons` list."""
    batch = source_sha256[:16]
    keys = pl.format("{}:{}", pl.lit(source_sha256), pl.col("line_number"))
    # Stream messages (`telemetry.envelope`) carry their topic and identity: the id follows the
    # message, so a redelivery in another batch is recognised.
    streamed = "message_id" in rejected.columns
    if streamed:
        keys = pl.coalesce(pl.format("msg:{}", pl.col("message_id")), keys)
    frame = rejected.select(
        pl.lit(batch).alias("partition_key"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(source_sha256).alias("source_sha256"),
        pl.col("line_number").cast(pl.Int64),
        truncate_raw(pl.col("raw").cast(pl.String)).alias("raw"),
        pl.col("reasons").list.first().alias("reason"),
        pl.col("reasons").cast(pl.List(pl.String)),
        pl.lit(ingested_at)
        .dt.cast_time_unit("us")
        .dt.convert_time_zone("UTC")
        .alias("ingested_at"),
        keys.alias("_key"),
        *[
            (pl.col(name) if streamed else pl.lit(None)).cast(pl.String).alias(name)
            for name in ("topic", "message_id")
        ],
    )
    frame = frame.with_columns(stable_ids(frame["_key"])).select(DEAD_LETTER_COLUMNS)
    return _own_copy(frame)


def _own_copy(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its own text: Polars' strings may be views into the whole block they
    were read from, and a file's dead letters are held until it is published, so each
    would keep its block (16 MiB) alive; Arrow's plain strings copy just the text."""
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]


def whole_file_dead_letter(
    reason: str, *, source_file: str, source_sha256: str, ingested_at: datetime, detail: str
) -> pl.DataFrame:
    """The one dead letter of a file that could not be read at all (line_number 0)."""
    row = pl.DataFrame(
        {"line_number": [0], "raw": [detail], "reasons": [[reason]]},
        schema={"line_number": pl.Int64, "raw": pl.String, "reasons": pl.List(pl.String)},
    )
    return dead_letter_frame(
        row, source_file=source_file, source_sha256=source_sha256, ingested_at=ingested_at
    )


def empty_dead_letters() -> pl.DataFrame:
    return pl.DataFrame(
        schema={name: column.dtype.type for name, column in DEAD_LETTER_SCHEMA.columns.items()}
    )
