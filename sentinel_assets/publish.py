"""Publish the cross-region report tables to a PostgreSQL schema for BI tools (no Dagster here).

Looker Studio, Tableau or Metabase connect with a plain PostgreSQL driver and read
`<schema>.<report>`. Each table is replaced in ONE transaction: take a per-table advisory
lock (two publishers never interleave), create the table if needed (or re-create it when its
columns changed), DELETE its rows, COPY the new rows in, COMMIT. Readers keep seeing the
previous rows (MVCC; they are never blocked by a DELETE) until the COMMIT, then all of the new
ones: never half a table, and grants and views on the table survive a publish.

A dropped connection, a server restart or a timeout (`statement_timeout`, `connect_timeout`)
rolls that transaction back on the server; the whole table's transaction is then retried on
a new connection with exponential backoff. Any other error (a type PostgreSQL refuses, no
permission) is raised at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import psycopg2
from psycopg2 import sql

from sentinel_assets.production import PublishTarget

# The report tables BI tools read (the cross-region ones of warehouse.REPORT_TABLES but
# failure_telemetry, a band breakdown analysts query in DuckDB).
PUBLISHED_TABLES = (
    "regional_rank",
    "failure_clusters",
    "campaign_report",
    "triage_queue",
    "status_before_after",
)
# Errors after which the same transaction may well succeed on a new connection.
TRANSIENT_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class PublishError(RuntimeError):
    """A table could not be published; the previous version is still in place."""


@dataclass(frozen=True)
class Published:
    table: str
    rows: int
    attempts: int
    seconds: float


def pg_type(dtype: pl.DataType) -> str:
    """The PostgreSQL column type a BI tool should see for a Polars column."""
    if dtype == pl.Boolean:
        return "boolean"
    if dtype in (pl.Int8, pl.Int16, pl.UInt8):
        return "smallint"
    if dtype in (pl.Int32, pl.UInt16):
        return "integer"
    if dtype in (pl.Int64, pl.UInt32):
        return "bigint"
    if dtype in (pl.UInt64, pl.Int128) or isinstance(dtype, pl.Decimal):
        return "numeric"
    if dtype in (pl.Float32, pl.Float64):
        return "double precision"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if isinstance(dtype, pl.Duration):
        return "interval"
    if isinstance(dtype, pl.List | pl.Array | pl.Struct):
        return "jsonb"
    return "text"  # String, Categorical, Enum, anything else as its text


def _copy_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as COPY (FORMAT csv) takes it: nested values as JSON text, durations as
    seconds (an interval literal), timestamps in ISO 8601 with their offset."""
    columns = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            values = [None if v is None else json.dumps(v, default=str) for v in frame[name]]
            columns.append(pl.Series(name, values, dtype=pl.String))
        elif isinstance(dtype, pl.Duration):
            seconds = frame[name].dt.total_microseconds() / 1e6
            columns.append((seconds.cast(pl.String) + " seconds").alias(name))
        else:
            columns.append(frame[name])
    return pl.DataFrame(columns)


def _csv(frame: pl.DataFrame) -> io.BytesIO:
    buffer = io.BytesIO()
    # Non-numeric values quoted, NULL as an unquoted empty field: PostgreSQL's CSV COPY then
    # tells NULL from the empty string.
    _copy_frame(frame).write_csv(
        buffer,
        include_header=False,
        null_value="",
        quote_style="non_numeric",
        datetime_format="%Y-%m-%dT%H:%M:%S%.f%:z",
    )
    buffer.seek(0)
    return buffer


def _columns(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return [(name, pg_type(dtype)) for name, dtype in frame.schema.items()]


def _existing_columns(cur, schema: str, table: str) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    )
    return [(name, kind) for name, kind in cur.fetchall()]


def _normalized(columns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    aliases = {
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
    }
    return [(name, aliases.get(kind, kind)) for name, kind in columns]


def _replace(conn, target: PublishTarget, table: str, frame: pl.DataFrame, before_commit) -> int:
    """One transaction: the table holds exactly `frame` after it, or is unchanged."""
    schema = sql.Identifier(target.schema)
    qualified = sql.Identifier(target.schema, table)
    wanted = _columns(frame)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{target.schema}.{table}",))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        existing = _existing_columns(cur, target.schema, table)
        if existing and _normalized(existing) != _normalized(wanted):
            cur.execute(sql.SQL("DROP TABLE {}").format(qualified))
            existing = []
        if not existing:
            cur.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    qualified,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                        for name, kind in wanted
                    ),
                )
            )
        cur.execute(sql.SQL("DELETE FROM {}").format(qualified))
        copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '')").format(
            qualified, sql.SQL(", ").join(sql.Identifier(name) for name, _ in wanted)
        )
        cur.copy_expert(copy.as_string(conn), _csv(frame))
        rows = cur.rowcount
        cur.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                qualified, sql.Literal(f"Sentinel report {table}, published by sentinel-publish")
            )
        )
    if before_commit is not None:
        before_commit(conn)
    conn.commit()
    return rows


def publish_table(
    target: PublishTarget,
    table: str,
    frame: pl.DataFrame,
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
    connect: Callable[..., object] = psycopg2.connect,
    before_commit: Callable[[object], None] | None = None,
    on_retry: Callable[[int, Exception], None] | None = None,
) -> Published:
    """Replace `target.schema`.`table` with `frame`, retrying transient failures.

    `before_commit(conn)` is called in every attempt just before COMMIT (tests use it to cut
    the connection at the worst moment)."""
    if not table.isidentifier() or table.lower() != table:
        raise ValueError(f"invalid report table name {table!r}")
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        conn = None
        try:
            conn = connect(**target.connect_kwargs())
            rows = _replace(conn, target, table, frame, before_commit)
            return Published(table, rows, attempt, time.monotonic() - started)
        except TRANSIENT_ERRORS as error:
            if attempt == attempts:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise PublishError(
                    f"publishing {target.schema}.{table} to {target.host}:{target.port} failed "
                    f"{attempts} times (last: {type(error).__name__}: {first_line}); the "
                    "previous version of the table is unchanged"
                ) from error
            if on_retry is not None:
                on_retry(attempt, error)
            time.sleep(backoff_s * 2 ** (attempt - 1))
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
    raise AssertionError("unreachable")


def publish_tables(
    target: PublishTarget, frames: dict[str, pl.DataFrame], **options
) -> list[Published]:
    """Each table in its own transaction (a dashboard reads each table whole; tables are
    replaced one after another)."""
    return [publish_table(target, table, frame, **options) for table, frame in frames.items()]
