"""Stream batch files: MQTT messages as landing files the ingestion path reads like any other.

Topic layout: `fleet/<region>/<device_id>/telemetry`. A batch file is JSON Lines named
`*.mqtt.jsonl` (`STREAM_SUFFIX`), one envelope per message, in arrival order:

    {"topic": "fleet/eu-west/EW-000001/telemetry", "rx_us": 1764662400123456,
     "payload": "{\\"device_id\\": ...}"}

`payload` is the payload as text (exactly as sent, JSON or not); a payload that is not valid
UTF-8 goes as `payload_b64` (base64) instead, so every byte is kept. `rx_us` is when the
consumer received it (microseconds since the epoch, for the latency figures).

Message identity (`message_id`): the first 16 hex digits of the MD5 of topic and payload. MQTT
itself carries no end-to-end id (packet ids are per connection and wrap at 65,535, and the DUP
flag only says "maybe sent before"), so a redelivered message is recognised by its content, as
a resent reading is: it is a duplicate, dropped once, counted in `duplicates`.

On reading (`parse_stream_block`), each envelope's payload is one record through the same JSON path
as landed `.jsonl` lines (`wire`), plus the topic rules: a topic outside the layout is the dead
letter `topic:outside_layout`, an empty payload `payload:empty`, and a payload whose region is
not the topic's `region:topic_mismatch`. Dead letters of stream messages carry `topic` and
`message_id`, and a dead letter redelivered in a later batch is a duplicate, not a second one.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets.telemetry import wire
from sentinel_assets.telemetry.local_duckdb import thread_connection

STREAM_SUFFIX = ".mqtt.jsonl"
TOPIC_FILTER = "fleet/+/+/telemetry"
TOPIC_PATTERN = r"^fleet/([^/+#]+)/([^/+#]+)/telemetry$"
_ENVELOPE_SCHEMA = {
    "topic": pl.String,
    "rx_us": pl.Int64,
    "payload": pl.String,
    "payload_b64": pl.String,
}


def topic_for(region: str, device_id: str) -> str:
    return f"fleet/{region}/{device_id}/telemetry"


def envelope(topic: str, payload: bytes, rx_us: int) -> bytes:
    """One batch-file line for a received message (the consumer's hot path: two C-coded
    `json.dumps` and a bytes format, no dict)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.b64encode(payload).decode("ascii")
        return b'{"topic":%s,"rx_us":%d,"payload_b64":"%s"}\n' % (
            json.dumps(topic).encode(),
            rx_us,
            encoded.encode(),
        )
    return b'{"topic":%s,"rx_us":%d,"payload":%s}\n' % (
        json.dumps(topic).encode(),
        rx_us,
        json.dumps(text).encode(),
    )


def is_stream_batch(path: Path) -> bool:
    return path.name.lower().endswith(STREAM_SUFFIX)


def _lossy(b64: str | None) -> str | None:
    return None if b64 is None else base64.b64decode(b64).decode("utf-8", "replace")


def _envelopes(block: bytes, source: str) -> pl.DataFrame:
    lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    try:
        frame = pl.read_ndjson(io.BytesIO(block), schema=_ENVELOPE_SCHEMA)
    except pl.exceptions.PolarsError as error:
        raise wire.UnreadableFile(
            "stream:bad_envelope", f"{source}: not a Sentinel stream batch ({error})"
        ) from None
    if frame.height != lines or frame["topic"].null_count():
        raise wire.UnreadableFile(
            "stream:bad_envelope", f"{source}: a line is not a message envelope"
        )
    return frame


def _message_ids(frame: pl.DataFrame) -> pl.Series:
    key = pl.concat_str(
        [
            pl.col("topic"),
            pl.lit("\x1f"),
            pl.coalesce(pl.col("payload"), pl.lit("b64:") + pl.col("payload_b64")),
        ]
    )
    keys = frame.select(key.alias("key"))
    conn = thread_connection()
    conn.register("keys_view", keys)
    try:
        ids = conn.sql("SELECT substr(md5(key), 1, 16) AS message_id FROM keys_view").pl()
    finally:
        conn.unregister("keys_view")
    return ids["message_id"]


def _stream_chunk(env: pl.DataFrame, first_line: int, conn) -> wire.WireChunk:
    n = env.height
    raw = env["payload"]
    if env["payload_b64"].null_count() < n:
        raw = raw.zip_with(
            raw.is_not_null(),
            pl.Series([_lossy(v) for v in env["payload_b64"].to_list()], dtype=pl.String),
        )
    decoded = pl.DataFrame(
        {
            "line_number": pl.int_range(first_line, first_line + n, eager=True, dtype=pl.Int64),
            "text": env["payload"],
            "too_long": (
                env["payload"].str.len_bytes().fill_null(0) > wire.MAX_LINE_BYTES
            ).to_numpy(),
            "raw": raw,
            "blank": [False] * n,
        }
    )
    records = wire._json_chunk(decoded, conn).records
    topic_region = env["topic"].str.extract(TOPIC_PATTERN, 1)
    records = records.with_columns(
        env["topic"].alias("topic"),
        _message_ids(env).alias("message_id"),
        topic_region.alias("_topic_region"),
        (env["payload"] == "").fill_null(False).alias("_empty"),
    )
    error = (
        pl.when(pl.col("_topic_region").is_null())
        .then(pl.lit("topic:outside_layout"))
        .when(pl.col("_empty"))
        .then(pl.lit("payload:empty"))
        .when(pl.col("wire_error").is_not_null())
        .then(pl.col("wire_error"))
        .when(pl.col("region").is_not_null() & (pl.col("region") != pl.col("_topic_region")))
        .then(pl.lit("region:topic_mismatch"))
    )
    records = records.with_columns(error.alias("wire_error")).drop("_topic_region", "_empty")
    return wire.WireChunk(records, blank_lines=0, header_lines=0)


STREAM_KIND = "stream"


def stream_blocks(path: Path) -> Iterator[wire.Block]:
    """A stream batch file in blocks of whole envelopes (`parse_stream_block` reads them)."""
    return wire.text_blocks(path, STREAM_KIND)


def parse_stream_block(block: wire.Block) -> wire.WireChunk:
    """A block's messages as a wire chunk (one record per message, with `topic` and
    `message_id` columns besides the wire fields)."""
    assert isinstance(block.data, bytes)
    env = _envelopes(block.data, block.source)
    return _stream_chunk(env, block.first_line, thread_connection())


def with_message_identity(rejected: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Rejected rows of a chunk with their message's `topic` and `message_id` (stream
    batches only; rows of landed files are returned as they are)."""
    if "message_id" not in records.columns:
        return rejected
    return rejected.join(
        records.select("line_number", "topic", "message_id"), on="line_number", how="left"
    )


def drop_redelivered(dead: pl.DataFrame, earlier_dead_letters: list[Path]) -> pl.DataFrame:
    """Dead letters of messages not dead-lettered before (earlier in this batch, or in the
    given dead-letter files of earlier batches): a redelivered malformed message is a
    duplicate, not a second dead letter. Rows without a message id are kept."""
    stream = pl.col("message_id").is_not_null()
    dead = dead.filter(~stream | pl.col("message_id").is_first_distinct())
    if dead.filter(stream).is_empty() or not earlier_dead_letters:
        return dead
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in earlier_dead_letters)
    with duckdb.connect() as conn:
        try:
            known = conn.sql(
                f"SELECT DISTINCT message_id FROM read_parquet([{files}], union_by_name = true)"
                " WHERE message_id IS NOT NULL"
            ).pl()
        except duckdb.BinderException:  # only files from before stream batches: no ids
            return dead
    if known.is_empty():
        return dead
    return dead.filter(~stream | ~pl.col("message_id").is_in(known["message_id"].implode()))
