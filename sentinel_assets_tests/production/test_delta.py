"""Region shards in Delta Lake, on local disk and on an S3 emulator (moto)."""

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel_assets import delta, warehouse
from sentinel_assets.cli import orchestrate
from sentinel_assets.contracts import REGIONS
from sentinel_assets_tests.production.conftest import environment

pytestmark = [pytest.mark.slow, pytest.mark.long(60)]
ROUNDS = 3


def shard(region_index: int, round_: int) -> pl.DataFrame:
    """Round r of a region: a different row count each round, so a mix would show."""
    rows = 2_000 + 500 * round_ + region_index
    return pl.DataFrame(
        {
            "record_id": [(region_index + 1) * 10**12 + i for i in range(rows)],
            "round": [round_] * rows,
            "partition_key": [REGIONS[region_index]] * rows,
        }
    )


def write_shard(uri: str, region_index: int, round_: int, env: dict[str, str]) -> int:
    os.environ.update(env)
    return delta.write_region(
        shard(region_index, round_), uri, REGIONS[region_index], delta.storage_options()
    )


@pytest.fixture
def table(s3, tmp_path):
    """A Delta table on the S3 emulator (the pipeline test below covers a local folder)."""
    return f"s3://sentinel/{tmp_path.name}/raw_fleet", s3.env()


def test_eight_concurrent_writers_three_rounds_lose_and_duplicate_nothing(table):
    uri, env = table
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    with environment(env):
        options = delta.storage_options()

        def reader() -> None:  # a dashboard reading while the writers commit
            while not stop.is_set():
                if delta.table_exists(uri, options):
                    frame = (
                        delta.scan(uri, options).group_by("partition_key", "round").len().collect()
                    )
                    seen.append({f"{r}/{k}": n for k, r, n in frame.iter_rows()})

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        spawn = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=8, mp_context=spawn) as pool:
                for round_ in range(ROUNDS):
                    attempts = list(
                        pool.map(write_shard, [uri] * 8, range(8), [round_] * 8, [env] * 8)
                    )
                    frame = delta.scan(uri, options).collect()
                    for index, region in enumerate(REGIONS):
                        rows = frame.filter(pl.col("partition_key") == region)
                        assert_frame_equal(rows.sort("record_id"), shard(index, round_))
                    assert frame["record_id"].is_unique().all()
        finally:
            stop.set()
            thread.join(timeout=30)
    print(f"\ncommit attempts in the last round: {attempts}")
    # Every snapshot a reader saw held whole shards: each (round, region) count is exact.
    expected = {f"{r}/{REGIONS[i]}": shard(i, r).height for i in range(8) for r in range(ROUNDS)}
    assert seen
    for snapshot in seen:
        for key, rows in snapshot.items():
            assert rows == expected[key], f"partial shard {key}: {rows} rows"


def test_the_pipeline_on_delta_equals_the_parquet_shards_and_reports(tmp_path):
    regions = list(REGIONS[:2])
    homes = {}
    for storage in ("parquet", "delta"):
        home = tmp_path / storage
        env = {
            "SENTINEL_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "SENTINEL_DEVICES_PER_REGION": "1500",
            "SENTINEL_STORAGE": storage,
        }
        with environment(env):
            outcome = orchestrate.run_fleet(regions, parallel=2)
        assert outcome.success, outcome
        homes[storage] = home
    root = str(homes["delta"] / "delta")
    for table in ("sanitized_fleet", "quarantine", "recovery_decisions"):
        parquet = pl.read_parquet(homes["parquet"] / "tables" / table / "*.parquet")
        stored = delta.scan(delta.table_uri(root, table)).collect().select(parquet.columns)
        key = parquet.columns
        assert_frame_equal(stored.sort(key, nulls_last=True), parquet.sort(key, nulls_last=True))
    # The report tables, built by the same .sql files over Polars scans of the Delta tables.
    for report in ("regional_rank", "failure_clusters", "campaign_report"):
        frames = []
        for storage in ("parquet", "delta"):
            with duckdb.connect(str(homes[storage] / "warehouse.duckdb"), read_only=True) as conn:
                frames.append(conn.sql(f"SELECT * FROM {report}").pl())
        key = frames[0].columns
        assert_frame_equal(frames[1].sort(key), frames[0].sort(key))
    # An analyst's query on the Delta tables: the shipped SQL, unchanged.
    with duckdb.connect() as conn:
        warehouse.create_macros(conn)
        delta.register_tables(conn, root, ["sanitized_fleet", "quarantine"])
        rank = conn.sql(warehouse.read_sql("regional_rank.sql")).pl()
    assert set(rank["region"]) == set(regions)
