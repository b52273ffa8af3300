"""The Delta Lake storage option (SENTINEL_STORAGE=delta): region shards as Delta tables on
local disk or S3 (SENTINEL_DELTA_ROOT, e.g. s3://bucket/sentinel), the work done in
`sentinel_assets.delta`. The Parquet-shard IO manager stays the embedded default."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from sentinel_assets import delta
from sentinel_assets.defs.resources import RegionShardStore, WarehouseCatalog, shard_of

# The region-partitioned assets, i.e. the Delta tables the report SQL reads.
PARTITIONED_TABLES = (
    "raw_fleet",
    "corrupted_fleet",
    "chaos_ledger",
    "sanitized_fleet",
    "quarantine",
    "campaign_status",
    "recovery_decisions",
    "recovery_outcomes",
)
STORAGES = ("parquet", "delta")


class DeltaCatalog(WarehouseCatalog):
    """The DuckDB catalog file for the report tables; every connection also sees the current
    snapshot of each Delta table under its asset's name (DuckDB cannot read Delta itself
    here: Polars scans it)."""

    delta_root: str = Field(description="Folder or s3:// prefix holding one Delta table per asset")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as conn:
            delta.register_tables(
                conn, self.delta_root, PARTITIONED_TABLES, delta.storage_options()
            )
            yield conn


class DeltaShardIOManager(RegionShardStore):
    """Each region partition of an asset is a partition of the asset's Delta table, replaced
    in one commit (partition-predicate overwrite); readers see committed data only."""

    delta_root: str

    def store_shard(
        self, context: dg.OutputContext, partition: str, frame: pl.DataFrame
    ) -> Mapping[str, object]:
        table = shard_of(context, partition, frame)
        uri = delta.table_uri(self.delta_root, table)
        attempts = delta.write_region(frame, uri, partition, delta.storage_options())
        return {"dagster/row_count": frame.height, "delta_table": uri, "commit_attempts": attempts}

    def load_shard(
        self, asset_key: dg.AssetKey, partition: str, columns: list[str] | None
    ) -> pl.DataFrame:
        uri = delta.table_uri(self.delta_root, asset_key.path[-1])
        return delta.read_region(uri, partition, columns, delta.storage_options())


def selected_storage() -> str:
    storage = os.environ.get("SENTINEL_STORAGE", "parquet").strip() or "parquet"
    if storage not in STORAGES:
        raise ValueError(f"SENTINEL_STORAGE must be one of {', '.join(STORAGES)}, not {storage!r}.")
    return storage


def delta_resources(home: Path, resources: dict[str, object]) -> dict[str, object]:
    """`build_resources` with the catalog and IO manager swapped for the Delta ones."""
    root = os.environ.get("SENTINEL_DELTA_ROOT") or str(home / "delta")
    plain: WarehouseCatalog = resources["catalog"]  # type: ignore[assignment]
    catalog = DeltaCatalog(
        database=plain.database, connection_config=plain.connection_config, delta_root=root
    )
    return {**resources, "catalog": catalog, "io_manager": DeltaShardIOManager(delta_root=root)}
