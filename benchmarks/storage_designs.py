"""Measure the two storage designs for region shards under concurrent partition runs.

(a) dagster-duckdb-polars' `DuckDBPolarsIOManager`: every partition run opens the one DuckDB
    file read-write and DELETEs + INSERTs its rows (not one transaction).
(b) Sentinel's `RegionShardIOManager`: every partition run replaces its own Parquet file
    atomically and only refreshes a view in the DuckDB file.

Each design materializes one partitioned asset for all 8 regions, `--parallel` runs at a
time in separate processes (as `sentinel demo` does), and reports wall time, lock failures,
and whether the final table holds every region. Needs the `bench` extra for (a)
(`pip install -e '.[dev,bench]'`, as `make bench` does). Usage:

    python -m benchmarks.storage_designs --rows-per-region 1000000 --parallel 2
"""

import argparse
import importlib.util
import json
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl

from sentinel_assets import paths
from sentinel_assets.contracts import REGIONS
from sentinel_assets.defs.partitions import region_partitions
from sentinel_assets.defs.resources import RegionShardIOManager, WarehouseCatalog


def _shard(region: str, rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(REGIONS.index(region))
    return pl.DataFrame(
        {
            "region": pl.repeat(region, rows, eager=True),
            "device": np.arange(rows),
            "battery_pct": rng.uniform(0, 100, rows),
            "signal_dbm": rng.integers(-130, -20, rows),
        }
    )


def _io_manager(design: str, home: Path) -> dg.IOManager:
    catalog = WarehouseCatalog(database=str(paths.catalog_path(home)))
    if design == "duckdb_io_manager":
        from dagster_duckdb_polars import DuckDBPolarsIOManager

        return DuckDBPolarsIOManager(database=catalog.database, schema="main")
    return RegionShardIOManager(catalog=catalog)


def _materialize(design: str, home: str, region: str, rows: int) -> tuple[str, bool, str]:
    @dg.asset(partitions_def=region_partitions, metadata={"partition_expr": "region"})
    def shard(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return _shard(context.partition_key, rows)

    started = time.perf_counter()
    try:
        result = dg.materialize(
            [shard],
            partition_key=region,
            resources={"io_manager": _io_manager(design, Path(home))},
            raise_on_error=False,
        )
        ok = result.success
        errors = [str(e.event_specific_data.error) for e in result.all_events if e.is_failure]
        error = errors[0].splitlines()[0] if errors else ""
    except Exception as exc:  # a lock error outside the step still counts as a failure
        ok, error = False, f"{type(exc).__name__}: {exc}"
    return region, ok, f"{time.perf_counter() - started:.2f}s {error}".strip()


def run_design(design: str, rows: int, parallel: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=parallel, mp_context=spawn) as pool:
            n = len(REGIONS)
            outcomes = list(pool.map(_materialize, [design] * n, [home] * n, REGIONS, [rows] * n))
        wall = time.perf_counter() - started
        with duckdb.connect(str(paths.catalog_path(Path(home))), read_only=True) as conn:
            try:
                [(regions, total)] = conn.sql(
                    "SELECT count(DISTINCT region), count(*) FROM shard"
                ).fetchall()
            except duckdb.Error:
                regions, total = 0, 0
    failures = [f"{region}: {detail}" for region, ok, detail in outcomes if not ok]
    return {
        "design": design,
        "rows_per_region": rows,
        "parallel": parallel,
        "wall_s": round(wall, 2),
        "failed_runs": len(failures),
        "failures": failures[:3],
        "regions_in_table": regions,
        "rows_in_table": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-region", type=int, default=1_000_000)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    if importlib.util.find_spec("dagster_duckdb_polars") is None:
        parser.exit(2, "storage_designs needs dagster-duckdb-polars: pip install -e '.[bench]'\n")
    for design in ("duckdb_io_manager", "parquet_shards"):
        print(json.dumps(run_design(design, args.rows_per_region, args.parallel)))


if __name__ == "__main__":
    main()
