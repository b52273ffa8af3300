"""The benchmark's in-process limit (`benchmarks.limit`) computes the pipeline's own tables:
a ratio against it compares the same work, with and without orchestration."""

from pathlib import Path

import polars as pl
import pytest

from benchmarks.limit import run_limit
from sentinel_assets import warehouse
from sentinel_assets.defs.delta_io import PARTITIONED_TABLES
from sentinel_assets.paths import tables_root

REGIONS = ("af-south", "eu-west")


@pytest.fixture(scope="module")
def limit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("limit")
    result = run_limit(REGIONS, 1500, home, reports=False)
    assert result["devices"] == 3000
    return home


@pytest.mark.parametrize("table", PARTITIONED_TABLES)
def test_the_limit_writes_every_shard_the_pipeline_writes(
    table: str, limit_home: Path, demo_warehouse: Path
):
    for region in REGIONS:
        ours = pl.read_parquet(warehouse.partition_file(tables_root(limit_home), table, region))
        pipeline = pl.read_parquet(
            warehouse.partition_file(tables_root(demo_warehouse), table, region)
        )
        assert ours.height > 0
        assert ours.equals(pipeline), f"{table}/{region}"
