"""Region shards as Delta Lake tables, on local disk or S3-compatible object storage (no Dagster).

One Delta table per asset (`<root>/<asset>`), partitioned by `partition_key`. A region's shard
is replaced with a partition-predicate overwrite (`partition_key = '<region>'`): one Delta
commit removes that region's files and adds the new ones, so several workers can replace
different regions of the same table at once, and a reader (any snapshot) sees either the
previous shard or the new one, never a mix and never an uncommitted file. A commit that loses
a race to another writer of the same table is retried.

DuckDB cannot read Delta or S3 here (its `delta` and `httpfs` extensions are not bundled and
cannot be downloaded), so `register_tables` scans each table with Polars (`pl.scan_delta`)
and registers the frames in a DuckDB connection under the asset names: the shipped `.sql`
files then run unchanged on them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

from sentinel_assets.contracts import PARTITION_KEY, validate_region
from sentinel_assets.warehouse import _identifier

COMMIT_ATTEMPTS = 8


def table_uri(root: str, table: str) -> str:
    """Where an asset's Delta table lives under `root` (a folder or `s3://bucket/prefix`)."""
    return f"{root.rstrip('/')}/{_identifier(table)}"


def storage_options(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """delta-rs / object_store options for S3 from the environment: SENTINEL_S3_ENDPOINT
    (an S3-compatible endpoint such as MinIO, moto or Ceph; unset for AWS itself),
    SENTINEL_S3_REGION; credentials come from the usual AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY (or the instance role), never from a file in the repo."""
    env = os.environ if env is None else env
    options: dict[str, str] = {}
    endpoint = env.get("SENTINEL_S3_ENDPOINT")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if env.get("SENTINEL_S3_REGION"):
        options["AWS_REGION"] = env["SENTINEL_S3_REGION"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(key):
            options[key] = env[key]
    # S3 offers conditional writes now; delta-rs uses them to make a commit atomic.
    options.setdefault("conditional_put", "etag")
    return options or None


def _is_conflict(error: Exception) -> bool:
    """delta-rs's CommitFailedError: another writer committed first (e.g. "Metadata changed
    since last commit" when several writers create the table at once); the write is redone
    on the new version. Other errors (no such bucket, bad credentials) are not retried."""
    return type(error).__name__ == "CommitFailedError"


def write_region(
    frame: pl.DataFrame,
    uri: str,
    region: str,
    options: Mapping[str, str] | None = None,
) -> int:
    """Replace one region's partition of the Delta table at `uri` in one commit; returns the
    number of attempts it took."""
    validate_region(region)
    if PARTITION_KEY not in frame.columns:
        frame = frame.with_columns(pl.lit(region).alias(PARTITION_KEY))
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            frame.write_delta(
                uri,
                mode="overwrite",
                storage_options=dict(options) if options else None,
                delta_write_options={
                    "predicate": f"{PARTITION_KEY} = '{region}'",
                    "partition_by": [PARTITION_KEY],
                },
            )
            return attempt
        except Exception as error:
            if attempt == COMMIT_ATTEMPTS or not _is_conflict(error):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def table_exists(uri: str, options: Mapping[str, str] | None = None) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(uri, storage_options=dict(options) if options else None)


def scan(uri: str, options: Mapping[str, str] | None = None) -> pl.LazyFrame:
    return pl.scan_delta(uri, storage_options=dict(options) if options else None)


def read_region(
    uri: str,
    region: str,
    columns: Sequence[str] | None = None,
    options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """One region's committed rows (partition pruning reads only its files)."""
    if not table_exists(uri, options):
        raise FileNotFoundError(f"no Delta table at {uri}: materialize it for this region first")
    frame = scan(uri, options).filter(pl.col(PARTITION_KEY) == validate_region(region))
    frame = frame.select(list(columns)) if columns else frame
    result = frame.collect()
    if result.height == 0:
        raise FileNotFoundError(f"no rows for {region} in {uri}: materialize it first")
    return result


def register_tables(
    conn: duckdb.DuckDBPyConnection,
    root: str,
    tables: Sequence[str],
    options: Mapping[str, str] | None = None,
) -> list[str]:
    """Each existing Delta table's current snapshot, registered in `conn` under its asset's
    name (a temporary view for this connection); returns the names registered."""
    registered = []
    for table in tables:
        uri = table_uri(root, table)
        if table_exists(uri, options):
            conn.register(_identifier(table), scan(uri, options).collect().to_arrow())
            registered.append(table)
    return registered
