"""Resources: run settings, the DuckDB catalog and the region-shard IO manager."""

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr, ValidationError

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import PARTITION_KEY
from sentinel_assets.defs.config import (
    ChaosSettings,
    GateSettings,
    RecoverySettings,
    SimulationSettings,
    devices_per_region,
    env_int,
)
from sentinel_assets.defs.region_steps import RegionFrames, is_region_range
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.failures import settings_problem

STORAGE_COMPATIBILITY = "v1.2.0"


class SentinelSettings(dg.ConfigurableResource):
    """All of a run's settings. Every asset requires it, so a bad value stops the run
    before the first shard is written."""

    simulation: SimulationSettings = Field(default_factory=SimulationSettings)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    _invalid_settings: str | None = PrivateAttr(default=None)

    def __init__(self, **values: object) -> None:
        # A value Dagster's config types let through (a bound, an unknown fault kind) fails
        # pydantic here, while the run sets up its resources: a run failure that `run_retries`
        # would launch again. Kept instead, it fails the first step that uses the settings
        # (`defs.failures.retry_transient_only`), once, with pydantic's message.
        try:
            super().__init__(**values)
        except ValidationError as error:
            super().__init__()
            self._invalid_settings = settings_problem(error)

    @property
    def invalid_settings(self) -> str | None:
        """Pydantic's message when the run's settings are invalid, else None."""
        return self._invalid_settings


class WarehouseCatalog(DuckDBResource):
    """The DuckDB file that catalogs every asset; a lock held too long gets a clear error."""

    lock_wait_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long a writer waits (retrying with backoff) for another process's "
        "lock on the catalog before failing with a message naming it.",
    )

    @property
    def tables_root(self) -> Path:
        """Region shards live beside the catalog file, in the same data folder."""
        return paths.tables_root(Path(self.database).parent)

    @property
    def reports_root(self) -> Path:
        """So do the report charts."""
        return paths.reports_root(Path(self.database).parent)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        if not warehouse.is_duckdb_file(Path(self.database)):
            raise dg.Failure(
                description=str(
                    warehouse.broken_catalog(Path(self.database), warehouse.NOT_A_CATALOG)
                ),
                allow_retries=False,
            )
        config = {"custom_user_agent": "dagster", **self.connection_config}
        try:
            conn = warehouse.connect_waiting(Path(self.database), config, self.lock_wait_s)
        except warehouse.CatalogLockedError as error:
            # Waited the whole budget already: a step retry would only wait it again.
            raise dg.Failure(
                description=str(error),
                metadata={"duckdb_error": str(error.__cause__)},
                allow_retries=False,
            ) from error
        try:
            yield conn
        finally:
            conn.close()


def shard_of(context: dg.OutputContext, partition: str, obj: pl.DataFrame) -> str:
    """The table an output's `partition` is stored in: one region's shard of the asset,
    which holds that partition's rows only."""
    if not context.has_asset_partitions:
        raise dg.Failure(f"{context.asset_key.to_user_string()} must be region-partitioned")
    table = context.asset_key.path[-1]
    if PARTITION_KEY in obj.columns and (obj[PARTITION_KEY] != partition).any():
        raise dg.Failure(
            f"{table} rows for another partition than {partition!r} would be stored in its "
            f"shard; every row's {PARTITION_KEY} must be the shard's partition key"
        )
    return table


class RegionShardStore(dg.ConfigurableIOManager):
    """An IO manager that stores each region partition of an asset as its own shard: one
    frame from a one-region step, `RegionFrames` from a step over several regions (each
    shard then gets its own materialization metadata). Subclasses store and load a shard."""

    def store_shard(
        self, context: dg.OutputContext, partition: str, frame: pl.DataFrame
    ) -> Mapping[str, object]:
        """Write one region's shard; returns its materialization metadata."""
        raise NotImplementedError

    def load_shard(
        self, asset_key: dg.AssetKey, partition: str, columns: list[str] | None
    ) -> pl.DataFrame:
        raise NotImplementedError

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | RegionFrames) -> None:
        if not isinstance(obj, dict):
            context.add_output_metadata(self.store_shard(context, context.asset_partition_key, obj))
            return
        missing = sorted(set(context.asset_partition_keys) - set(obj))
        if missing:
            raise dg.Failure(f"{context.asset_key.to_user_string()}: no shard for {missing}")
        for partition in context.asset_partition_keys:
            context.step_context.add_asset_metadata(
                self.store_shard(context, partition, obj[partition]),
                asset_key=context.asset_key,
                partition_key=partition,
            )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | RegionFrames:
        columns = (context.definition_metadata or {}).get("columns")
        if is_region_range(context):
            keys = context.asset_partition_keys
            return {key: self.load_shard(context.asset_key, key, columns) for key in keys}
        return self.load_shard(context.asset_key, context.asset_partition_key, columns)


class RegionShardIOManager(RegionShardStore):
    """Stores each region partition of an asset as its own Parquet file, replaced atomically,
    and keeps a view per asset over all regions in the DuckDB catalog.

    A step downstream in the same run and process gets the frame just written from memory
    (while its file is unchanged on disk), not a second read of the Parquet file."""

    catalog: WarehouseCatalog
    memory_cache_mb: int = Field(
        default=2048,
        ge=0,
        description="Frames this run wrote are kept in memory up to this many MiB (least "
        "recently used dropped first) and handed to downstream steps in the same process. "
        "0 reads every input back from its Parquet file.",
    )
    _written: "OrderedDict[Path, warehouse.WrittenShard]" = PrivateAttr(default_factory=OrderedDict)

    def _path(self, asset_key: dg.AssetKey, partition_key: str) -> Path:
        return warehouse.partition_file(self.catalog.tables_root, asset_key.path[-1], partition_key)

    def _remember(self, path: Path, frame: pl.DataFrame) -> None:
        self._written.pop(path, None)
        budget = self.memory_cache_mb * 2**20
        if frame.estimated_size() > budget:
            return
        self._written[path] = warehouse.WrittenShard.of(path, frame)
        while sum(shard.frame.estimated_size() for shard in self._written.values()) > budget:
            self._written.popitem(last=False)

    def store_shard(
        self, context: dg.OutputContext, partition: str, frame: pl.DataFrame
    ) -> Mapping[str, object]:
        table = shard_of(context, partition, frame)
        path = self._path(context.asset_key, partition)
        # A view is a glob over all regions' shards, so the catalog is written only when an
        # asset gets its first shard or the catalog file is new, not after every output.
        new_catalog = not Path(self.catalog.database).exists()
        first_shard = not warehouse.has_shards(self.catalog.tables_root, table)
        warehouse.write_partition(frame, path)
        self._remember(path, frame)
        if new_catalog or first_shard:
            with self.catalog.get_connection() as conn:
                if new_catalog:
                    warehouse.create_views(conn, self.catalog.tables_root)
                else:
                    warehouse.create_view(conn, self.catalog.tables_root, table)
        return {"dagster/row_count": frame.height, "shard": dg.MetadataValue.path(str(path))}

    def load_shard(
        self, asset_key: dg.AssetKey, partition: str, columns: list[str] | None
    ) -> pl.DataFrame:
        path = self._path(asset_key, partition)
        written = self._written.get(path)
        if written is not None and written.is_on_disk():
            self._written.move_to_end(path)
            return written.frame.select(columns) if columns else written.frame
        return warehouse.read_partition(path, columns)


def build_resources(home: Path | None = None) -> dict[str, object]:
    """Resources rooted at one data folder (default `$SENTINEL_HOME`, else ./.sentinel)."""
    home = home or paths.data_home()
    catalog = WarehouseCatalog(
        database=str(paths.catalog_path(home)),
        lock_wait_s=env_int(warehouse.LOCK_WAIT_ENV, 120),
        # Readable by older `duckdb` command-line clients too, not only this Python package.
        connection_config={"storage_compatibility_version": STORAGE_COMPATIBILITY},
    )
    resources = {
        "settings": SentinelSettings(
            simulation=SimulationSettings(
                devices_per_region=devices_per_region(),
                seed=env_int("SENTINEL_SEED", 7),
                source=os.environ.get("SENTINEL_FLEET_SOURCE") or "simulator",
            )
        ),
        "catalog": catalog,
        "telemetry": TelemetryLanding(
            home=str(home), landing_dir=os.environ.get(paths.LANDING_ENV, "")
        ),
        "io_manager": RegionShardIOManager(
            catalog=catalog, memory_cache_mb=env_int("SENTINEL_MEMORY_CACHE_MB", 2048)
        ),
    }
    from sentinel_assets.defs import delta_io  # production option: SENTINEL_STORAGE=delta

    if delta_io.selected_storage() == "delta":
        return delta_io.delta_resources(home, resources)
    return resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
