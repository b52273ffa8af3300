"""Wire formats: a landed file -> chunks of records as text fields, every physical line kept.

Formats, from the file name: `.csv`, `.jsonl` / `.ndjson`, `.parquet`, the text ones optionally
gzip-compressed (`.csv.gz`, `.jsonl.gz`). Text files are read in blocks of `CHUNK_BYTES`
(gzip is decompressed as a stream), so memory does not grow with the file.

Each chunk is a frame with one row per data line (or Parquet row): `line_number` (1-based
physical line; the CSV header is line 1; for Parquet the 1-based row), `raw` (the line's text,
invalid UTF-8 decoded with replacement characters), `wire_error` (a reason code when the line
cannot even be split into fields) and one text column per known wire field (NULL when absent or
empty). Unknown fields are ignored (newer agents may send more).

Rules, so that accounting is exact: a line ends at `\\n` (a trailing `\\r` is dropped); blank
lines carry no record and are counted, not dead-lettered. CSV is comma-separated with a header
row and no line breaks or commas inside fields (telemetry has no free text); surrounding
spaces and double quotes around a field are removed. JSON values are taken as sent (a number
sent as `" 55"` is not a number). Splitting, decoding and JSON parsing run vectorized in
Polars/DuckDB (JSON Lines: DuckDB's `json_transform` on the whole block, and only if it
refuses, its `json_valid` to find the broken lines); only the lines with invalid UTF-8 are
decoded one by one (for their `raw` text with replacement characters).
"""

from __future__ import annotations

import codecs
import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from sentinel_assets.telemetry.local_duckdb import thread_connection

# Text read per block (a longer line is skipped to its end). Ingestion keeps a few blocks in
# flight (`ingest._ingest`), and a block's frames take many times its size at their peak (a
# malformed 32 MiB JSON Lines block: ~0.6 GB); 16 MiB keeps them inside the 2 GiB budget
# (measured at 10M: 1.51 GiB), at no measurable cost in time.
CHUNK_BYTES = 16 * 2**20
MAX_LINE_BYTES = 64 * 2**10  # a longer line is a dead letter (`line:too_long`)
# No data line fits more fields in MAX_LINE_BYTES; a wider header is refused before Polars
# builds a struct of that many fields (a 1M-column header cost 10 s and 2 GiB).
MAX_CSV_COLUMNS = 1_024
PARQUET_BATCH_ROWS = 250_000

V1_FIELDS: tuple[str, ...] = (
    "device_id",
    "region",
    "timestamp",
    "fw_version",
    "target_fw",
    "model",
    "status",
    "battery",
    "temp_f",
    "signal",
    "retries",
)
V2_FIELDS: tuple[str, ...] = (
    "device_id",
    "region",
    "ts",
    "firmware_from",
    "firmware_to",
    "model",
    "update_status",
    "failure_kind",
    "battery_pct",
    "battery_voltage_v",
    "temperature_c",
    "signal_dbm",
    "retry_count",
    "boot_attempts",
    "commit_state",
    "schema_version",
    # Optional V2 extras (gateways know their site, agents their board revision); NULL if absent.
    "site",
    "hardware_rev",
)
WIRE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys((*V1_FIELDS, *V2_FIELDS)))
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


class UnreadableFile(Exception):
    """The file as a whole cannot be read; `reason` is its dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class WireChunk:
    records: pl.DataFrame  # line_number, raw, wire_error, *WIRE_FIELDS
    blank_lines: int
    header_lines: int


def file_format(path: Path) -> tuple[str, bool]:
    """(`csv` | `jsonl` | `parquet`, gzip?) from the name; unknown names are unreadable."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None or (compressed and kind == "parquet"):
        raise UnreadableFile(
            "file:unknown_format",
            f"{path.name}: expected .csv, .jsonl, .ndjson or .parquet (text ones may be .gz)",
        )
    return kind, compressed


def _open(path: Path, compressed: bool) -> BinaryIO:
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _blocks(path: Path, compressed: bool) -> Iterator[bytes]:
    """The decompressed text in blocks that each end at a line break (or the end of file). A
    line with no break within `CHUNK_BYTES` is skipped to its end and stands in its block as
    its first bytes only (enough to be a `line:too_long` dead letter): memory stays bounded
    and the file's other lines are still read."""
    try:
        with _open(path, compressed) as stream:
            rest = b""
            first = True
            skipping = False  # inside an oversized line; `rest` holds its first bytes
            while True:
                data = stream.read(CHUNK_BYTES)
                if first:
                    if not data:
                        raise UnreadableFile("file:empty", f"{path.name} holds no data")
                    if b"\x00" in data[:65536]:
                        raise UnreadableFile("file:binary", f"{path.name} is not a text file")
                    first = False
                if not data:
                    if rest:
                        yield rest
                    return
                if skipping:
                    end = data.find(b"\n")
                    if end < 0:
                        continue
                    yield rest + b"\n"
                    rest, data, skipping = b"", data[end + 1 :], False
                cut = data.rfind(b"\n")  # `rest` never holds a break
                if cut < 0:
                    buffer = rest + data
                    skipping = len(buffer) > CHUNK_BYTES
                    rest = buffer[: MAX_LINE_BYTES + 2] if skipping else buffer  # flagged too long
                    continue
                # One copy at most: a block is not copied twice on its way.
                whole = not rest and cut + 1 == len(data)
                yield data if whole else b"".join((rest, memoryview(data)[: cut + 1]))
                rest = data[cut + 1 :]
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise UnreadableFile("gzip:corrupt", f"{path.name}: {error}") from None
    except OSError as error:
        raise UnreadableFile("file:unreadable", f"{path.name}: {error}") from None


def _offsets(block: bytes) -> np.ndarray:
    """Where each physical line of a block starts, and the end (NumPy finds the breaks)."""
    view = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(view == 10) + 1
    if not block.endswith(b"\n"):
        ends = np.append(ends, len(block))
    return np.concatenate([[0], ends]).astype(np.int64)


def _arrow_lines(block: bytes | bytearray, offsets: np.ndarray, text: bool) -> pl.Series:
    """The lines as one Arrow array over the block, without copying it."""
    kind = pa.large_string() if text else pa.large_binary()
    array = pa.Array.from_buffers(
        kind, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    )
    return pl.from_arrow(array)


_invalid_at = threading.local()  # where this thread's current decode met invalid bytes


def _note_invalid(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: note where the invalid bytes are, and go on decoding (with
    nothing in their place: the text is not kept, and a wider character would make the
    decoder copy what it has so far)."""
    assert isinstance(error, UnicodeDecodeError)
    _invalid_at.positions.append(error.start)
    return "", error.end


codecs.register_error("sentinel-note-invalid", _note_invalid)


def _invalid_lines(block: bytes, offsets: np.ndarray) -> list[int]:
    """Indices of the lines that are not valid UTF-8 (a line break always ends a byte
    sequence, so a line is broken alone). An ASCII block (the usual case) has none; otherwise
    only the lines holding a byte over 0x7F are decoded, one by one, unless they are most of
    the block: then one pass of the decoder notes where it meets invalid bytes."""
    if block.isascii():
        return []
    high = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) >= 0x80)
    candidates = np.unique(np.searchsorted(offsets, high, side="right") - 1).tolist()
    if len(candidates) * 8 > len(offsets):
        _invalid_at.positions = []
        block.decode("utf-8", "sentinel-note-invalid")
        positions = np.asarray(_invalid_at.positions, dtype=np.int64)
        return np.unique(np.searchsorted(offsets, positions, side="right") - 1).tolist()
    broken = []
    for line in candidates:
        try:
            block[offsets[line] : offsets[line + 1]].decode("utf-8")
        except UnicodeDecodeError:
            broken.append(line)
    return broken


def _decoded(block: bytes, first_line: int) -> pl.DataFrame:
    """One row per physical line: `line_number`, `text` (NULL for invalid UTF-8), `raw`
    (always set, invalid bytes replaced by U+FFFD), `too_long` and `blank`. A block that is
    valid UTF-8 as a whole (the usual case) becomes text without a copy; otherwise only its
    broken lines are blanked in a copy (so the rest is text without decoding) and decoded
    one by one with replacement characters for `raw`."""
    offsets = _offsets(block)
    numbers = pl.Series(
        "line_number", np.arange(first_line, first_line + len(offsets) - 1, dtype=np.int64)
    )
    too_long = pl.Series("too_long", np.diff(offsets) > MAX_LINE_BYTES + 1)
    broken = _invalid_lines(block, offsets)
    if not broken:
        text = _arrow_lines(block, offsets, text=True).str.strip_chars_end("\r\n").alias("text")
        frame = pl.DataFrame([numbers, text, too_long]).with_columns(pl.col("text").alias("raw"))
    else:
        readable = bytearray(block)
        lossy = []
        for line in broken:
            start, end = int(offsets[line]), int(offsets[line + 1])
            lossy.append(block[start:end].decode("utf-8", "replace").rstrip("\r\n"))
            readable[start:end] = b" " * (end - start)  # same length: the offsets hold
        lines = _arrow_lines(readable, offsets, text=True).str.strip_chars_end("\r\n")
        index = pl.Series(broken, dtype=pl.UInt32)
        raw = lines.clone().scatter(index, pl.Series(lossy, dtype=pl.String))
        text = lines.scatter(index, pl.Series([None] * len(broken), dtype=pl.String))
        frame = pl.DataFrame([numbers, text.alias("text"), too_long, raw.alias("raw")])
    return frame.with_columns(
        (pl.col("text").str.strip_chars() == "").fill_null(False).alias("blank")
    )


def _with_wire_error(frame: pl.DataFrame, parse_error: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("too_long"))
        .then(pl.lit("line:too_long"))
        .when(pl.col("text").is_null())
        .then(pl.lit("encoding:invalid_utf8"))
        .otherwise(parse_error)
        .alias("wire_error")
    )


_LINEAGE = ["line_number", "raw", "wire_error"]


def _in_line_order(parsed: list[pl.DataFrame], data: pl.DataFrame) -> pl.DataFrame:
    """Records: the parsed lines (`_LINEAGE` and every wire field) and the lines of `data`
    with a wire error (no fields), in line order."""
    unparsed = data.filter(pl.col("wire_error").is_not_null()).select(
        *_LINEAGE, *[pl.lit(None, pl.String).alias(name) for name in WIRE_FIELDS]
    )
    if len(parsed) == 1 and not unparsed.height:
        return parsed[0]
    return pl.concat([*parsed, unparsed]).sort("line_number")


_WIRE_SCHEMA = {name: pl.String for name in WIRE_FIELDS}
# Valid JSON whose first character is `{` is an object: one parse (json_valid), not two.
_JSON_CHECK = """
    SELECT _row,
           CASE WHEN too_long OR text IS NULL THEN NULL
                WHEN NOT json_valid(text) THEN 'json:malformed'
                WHEN NOT starts_with(ltrim(text, chr(32) || chr(9) || chr(10) || chr(13)), '{')
                  THEN 'json:not_an_object' END
             AS json_error
    FROM decoded_view
"""


# Every wire field as text, as DuckDB's `json_transform` takes it (values as sent: a number's
# text, a nested value's JSON).
_OBJECT_FIELDS = json.dumps({name: "VARCHAR" for name in WIRE_FIELDS})


def _try_read_objects(texts: pl.Series, conn: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """One JSON object per element -> one text column per wire field, in order, parsed
    together by DuckDB (`json_transform`: half the CPU of Polars' NDJSON reader); None when
    some element is not valid JSON."""
    if texts.is_empty():
        return pl.DataFrame(schema=_WIRE_SCHEMA)
    conn.register("objects_view", texts.to_frame("text"))
    try:
        frame = conn.sql(
            f"SELECT unnest(json_transform(text, '{_OBJECT_FIELDS}')) FROM objects_view"
        ).pl()
    except duckdb.InvalidInputException:
        return None
    finally:
        conn.unregister("objects_view")
    return frame if frame.height == texts.len() else None


def _read_objects(texts: pl.Series, conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Like `_try_read_objects` for elements DuckDB found valid; should the transform still
    refuse one, each field is extracted on its own instead."""
    frame = _try_read_objects(texts, conn)
    if frame is not None:
        return frame
    paths = ", ".join(f"'$.\"{name}\"'" for name in WIRE_FIELDS)
    conn.register("objects_view", pl.DataFrame({"text": texts}).with_row_index("_row"))
    values = conn.sql(
        f"SELECT _row, json_extract_string(text, [{paths}]) AS v FROM objects_view"
    ).pl()
    conn.unregister("objects_view")
    return values.sort("_row").select(
        pl.col("v").list.get(i, null_on_oob=True).alias(name) for i, name in enumerate(WIRE_FIELDS)
    )


def _json_chunk(decoded: pl.DataFrame, conn: duckdb.DuckDBPyConnection) -> WireChunk:
    """JSON Lines: the lines shaped like an object (`{...}`) are parsed together (DuckDB's
    `json_transform`); the others, few, are checked one by one by DuckDB's `json_valid`
    (vectorized) and parsed if valid. Should a shaped line still be malformed, every line is
    checked."""
    blank = int(decoded["blank"].sum())
    data = decoded.filter(~pl.col("blank")).with_row_index("_row")
    data = _with_wire_error(data, pl.lit(None, pl.String))
    readable = pl.col("wire_error").is_null()
    text = pl.col("text")
    data = data.with_columns(
        (readable & text.str.starts_with("{") & text.str.ends_with("}")).alias("_shaped")
    )
    shaped = data.filter("_shaped")
    objects = _try_read_objects(shaped["text"], conn)
    pieces = [] if objects is None else [(shaped, objects)]
    to_check = data.filter(readable if objects is None else readable & ~pl.col("_shaped"))
    if to_check.height:
        conn.register("decoded_view", to_check.select("_row", "text", "too_long"))
        checked = conn.sql(_JSON_CHECK).pl()
        conn.unregister("decoded_view")
        data = data.join(checked, on="_row", how="left", maintain_order="left")
        data = _with_wire_error(data, pl.col("json_error"))
        valid = to_check.join(checked.filter(pl.col("json_error").is_null()), on="_row")
        pieces.append((valid, _read_objects(valid["text"], conn)))
    good = [
        rows.select(_LINEAGE).hstack(
            parsed.select(pl.col(name).replace("", None) for name in WIRE_FIELDS)
        )
        for rows, parsed in pieces
    ]
    return WireChunk(_in_line_order(good, data), blank_lines=blank, header_lines=0)


def _csv_header(block: bytes, path: Path) -> list[str]:
    line = block.split(b"\n", 1)[0]
    try:
        text = line.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UnreadableFile("csv:bad_header", f"{path.name}: header is not UTF-8") from None
    if text.count(",") >= MAX_CSV_COLUMNS:
        raise UnreadableFile(
            "csv:bad_header",
            f"{path.name}: header has {text.count(',') + 1:,} columns, more than "
            f"{MAX_CSV_COLUMNS:,}",
        )
    names = [name.strip().strip('"').strip() for name in text.split(",")]
    if not text.strip() or "" in names or len(set(names)) != len(names):
        raise UnreadableFile(
            "csv:bad_header", f"{path.name}: header {text[:200]!r} has empty or repeated names"
        )
    return names


# Bytes that make a CSV field need stripping wherever they are: quotes and ASCII whitespace
# other than spaces and line breaks (spaces only next to a comma or a line's end).
_CSV_SPECIAL = (b'"', b"\t", b"\x0b", b"\x0c")


def _plain_csv(block: bytes) -> bool:
    """True when no field of the block needs stripping: ASCII, none of `_CSV_SPECIAL`, no
    carriage return inside a line, and no space next to a comma or at a line's start or end
    (found with NumPy: `bytes.find` of a two-byte pattern scans 16 MiB in ~15 ms)."""
    if not block.isascii() or any(special in block for special in _CSV_SPECIAL):
        return False
    view = np.frombuffer(block, dtype=np.uint8)
    last = len(view) - 1
    if b"\r" in block:
        returns = np.flatnonzero(view == 13)
        if (view[np.minimum(returns + 1, last)] != 10).any() or returns[-1] == last:
            return False
    spaces = np.flatnonzero(view == 32)
    if not len(spaces):
        return True
    before = view[np.maximum(spaces - 1, 0)]
    after = view[np.minimum(spaces + 1, last)]
    at_edge = (spaces == 0) | (spaces == last) | (before == 44) | (before == 10)
    return not (at_edge | (after == 44) | (after == 10) | (after == 13)).any()


def _csv_chunk(decoded: pl.DataFrame, header: list[str], block: bytes) -> WireChunk:
    """CSV: every line is checked for its field count, and the good ones are split at their
    commas (`str.split_exact`), fields stripped of surrounding whitespace and double quotes
    (unless the block is plain: `_plain_csv`)."""
    blank = int(decoded["blank"].sum())
    data = decoded.filter(~pl.col("blank"))
    commas = pl.col("text").str.count_matches(",", literal=True)
    data = _with_wire_error(
        data, pl.when(commas != len(header) - 1).then(pl.lit("csv:field_count"))
    )
    readable = pl.col("wire_error").is_null()
    good = data.filter(readable)
    parts = good["text"].str.split_exact(",", len(header) - 1).struct.rename_fields(header)
    fields = parts.struct.unnest()
    if not _plain_csv(block):
        stripped = [pl.col(name).str.strip_chars() for name in header]
        if good["text"].str.contains('"', literal=True).any():
            stripped = [value.str.strip_chars('"') for value in stripped]
        fields = fields.select(stripped)
    fields = fields.select(
        pl.col(name).replace("", None) if name in header else pl.lit(None, pl.String).alias(name)
        for name in WIRE_FIELDS
    )
    records = _in_line_order([good.select(_LINEAGE).hstack(fields)], data)
    return WireChunk(records, blank_lines=blank, header_lines=0)


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Parquet columns as wire text: datetimes in ISO 8601 (with their offset if they have a
    time zone), nested values as JSON, everything else cast."""
    columns = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            fmt = "%Y-%m-%dT%H:%M:%S%.f%:z" if dtype.time_zone else "%Y-%m-%dT%H:%M:%S%.f"
            columns.append(col.dt.to_string(fmt).alias(name))
        elif dtype.is_nested():
            columns.append(pl.struct(col).struct.json_encode().alias(name))
        else:
            columns.append(col.cast(pl.String).alias(name))
    return frame.select(columns)


def _parquet_records(batch: pa.RecordBatch, first_row: int) -> pl.DataFrame:
    frame = _as_text(pl.from_arrow(pa.Table.from_batches([batch])))
    return frame.select(
        pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64).alias("line_number"),
        pl.struct(pl.all()).struct.json_encode().alias("raw"),
        pl.lit(None, pl.String).alias("wire_error"),
        *[
            (pl.col(name) if name in frame.columns else pl.lit(None, pl.String))
            .replace("", None)
            .alias(name)
            for name in WIRE_FIELDS
        ],
    )


@dataclass(frozen=True)
class Block:
    """A piece of a file that parses on its own: text lines (ending at a line break) whose
    first is physical line `first_line`, or a batch of Parquet rows from row `first_line`."""

    source: str  # the file's name, for messages
    kind: str  # csv | jsonl | parquet, or a reader's own kind (`envelope.STREAM_KIND`)
    data: bytes | pa.RecordBatch
    first_line: int
    header: tuple[str, ...] = ()  # CSV: the header's names
    header_lines: int = 0  # 1 in the CSV block that starts with the header


def _line_count(block: bytes) -> int:
    # NumPy counts 4x faster than `bytes.count`, and without holding the GIL.
    breaks = int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 10))
    return breaks + (0 if block.endswith(b"\n") else 1)


def text_blocks(path: Path, kind: str, compressed: bool = False) -> Iterator[Block]:
    """A text file as blocks, in order, each knowing its first physical line."""
    next_line = 1
    header: tuple[str, ...] = ()
    for data in _blocks(path, compressed):
        header_lines = 0
        if kind == "csv" and not header:
            header, header_lines = tuple(_csv_header(data, path)), 1
        yield Block(path.name, kind, data, next_line, header, header_lines)
        next_line += _line_count(data)


def _parquet_blocks(path: Path) -> Iterator[Block]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        next_row = 1
        for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield Block(path.name, "parquet", batch, next_row)
            next_row += batch.num_rows
    except (pa.ArrowException, OSError) as error:
        raise UnreadableFile("parquet:unreadable", f"{path.name}: {error}") from None


def read_blocks(path: Path) -> Iterator[Block]:
    """The file in blocks to parse (`parse_block`), possibly side by side; raises
    `UnreadableFile` when it cannot be read at all (possibly after some blocks: callers keep
    nothing of a file that fails)."""
    kind, compressed = file_format(path)
    if kind == "parquet":
        yield from _parquet_blocks(path)
    else:
        yield from text_blocks(path, kind, compressed)


def parse_block(block: Block) -> WireChunk:
    """A block's records (`WireChunk`): safe to call from several threads at once."""
    if block.kind == "parquet":
        assert isinstance(block.data, pa.RecordBatch)
        records = _parquet_records(block.data, block.first_line)
        return WireChunk(records, blank_lines=0, header_lines=0)
    assert isinstance(block.data, bytes)
    decoded = _decoded(block.data, block.first_line).slice(block.header_lines)
    if block.kind == "csv":
        chunk = _csv_chunk(decoded, list(block.header), block.data)
    else:
        chunk = _json_chunk(decoded, thread_connection())
    return WireChunk(chunk.records, chunk.blank_lines, block.header_lines)
