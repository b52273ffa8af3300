"""Broken storage is named, with the way to rebuild it: a truncated, garbage or missing shard
names its file and the partition to re-materialize; a garbage catalog file names itself and
`sentinel rebuild-catalog`, which rebuilds it from the shards. The end-to-end repair of each
is scenario 3 of the reliability suite (reliability/test_broken_storage.py)."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from sentinel_assets import paths, warehouse
from sentinel_assets.cli.main import main
from sentinel_assets.defs.resources import build_resources

REGIONS = ("eu-west", "af-south")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def shard(home: Path, table: str, region: str) -> Path:
    return warehouse.partition_file(paths.tables_root(home), table, region)


@pytest.mark.parametrize("damage", [truncate, lambda p: p.write_bytes(b"PAR1 not parquet")])
def test_a_broken_shard_names_its_file_and_the_partition_to_rematerialize(tmp_path, damage):
    path = shard(tmp_path, "sanitized_fleet", "eu-west")
    warehouse.write_partition(pl.DataFrame({"record_id": range(1000)}), path)
    damage(path)
    with pytest.raises(warehouse.BrokenStorageError) as raised:
        warehouse.read_partition(path)
    message = str(raised.value)
    assert f"The shard {path} is broken" in message
    assert "`sentinel demo --regions eu-west`" in message
    assert "--select sanitized_fleet --partition eu-west" in message


def test_a_readable_shard_reads_as_written(tmp_path):
    path = shard(tmp_path, "quarantine", "af-south")
    frame = pl.DataFrame({"record_id": [1, 2, 3]})
    warehouse.write_partition(frame, path)
    assert warehouse.read_partition(path).equals(frame)


def test_an_error_that_is_not_about_storage_is_left_alone(tmp_path):
    with duckdb.connect() as conn, pytest.raises(duckdb.Error) as raised:
        conn.execute("SELECT * FROM no_such_table")
    assert warehouse.storage_problem(raised.value, tmp_path / "w.duckdb") is None


def test_a_shard_missing_beside_the_regions_other_tables_is_named(tmp_path):
    root = paths.tables_root(tmp_path)
    frame = pl.DataFrame({"record_id": [1]})
    for table in ("sanitized_fleet", "quarantine"):
        for region in REGIONS:
            warehouse.write_partition(frame, warehouse.partition_file(root, table, region))
    warehouse.require_whole_regions(root)  # every region whole: nothing to say
    gone = warehouse.partition_file(root, "quarantine", "af-south")
    gone.unlink()
    assert warehouse.missing_shards(root) == [gone]
    with pytest.raises(
        warehouse.BrokenStorageError, match="re-materialize quarantine for af-south"
    ):
        warehouse.require_whole_regions(root)


def test_a_region_with_no_shards_at_all_is_not_a_gap(tmp_path):
    root = paths.tables_root(tmp_path)
    warehouse.write_partition(
        pl.DataFrame({"record_id": [1]}), shard(tmp_path, "raw_fleet", "eu-west")
    )
    assert warehouse.missing_shards(root) == []
    assert warehouse.missing_shards(tmp_path / "nothing-yet") == []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, definitions: dg.Definitions) -> Path:
    """Two regions and the report, materialized once; each test damages its own copy."""
    home = tmp_path_factory.mktemp("broken") / "sentinel"
    with pytest.MonkeyPatch.context() as env, dg.DagsterInstance.ephemeral() as instance:
        env.setenv("SENTINEL_DEVICES_PER_REGION", "500")
        for region in REGIONS:
            assert run(definitions, home, instance, "fleet_refresh", region).success
        assert run(definitions, home, instance, "regional_report").success
    return home


def run(definitions, home, instance, job, partition=None) -> dg.ExecuteInProcessResult:
    return definitions.resolve_job_def(job).execute_in_process(
        partition_key=partition,
        instance=instance,
        resources=build_resources(home),
        raise_on_error=False,
    )


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "sentinel"
    shutil.copytree(built, copy)
    monkeypatch.setenv("SENTINEL_HOME", str(copy))
    monkeypatch.setenv("DAGSTER_HOME", str(copy / "dagster"))
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", "500")
    return copy


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        e.step_failure_data.user_failure_data.description
        if e.step_failure_data.user_failure_data
        else e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure
    ]


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


@pytest.mark.slow
def test_a_garbage_catalog_is_named_and_rebuilt_from_the_shards(home, definitions, capsys):
    catalog = paths.catalog_path(home)
    with duckdb.connect(str(catalog), read_only=True) as conn:
        before = {
            table: conn.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for table in ("sanitized_fleet", "quarantine", "recovery_decisions", "regional_rank")
        }
    catalog.write_bytes(b"\x00garbage" * 4096)

    with dg.DagsterInstance.ephemeral() as instance:
        report = run(definitions, home, instance, "regional_report")
    assert not report.success
    assert retries(report) == 0
    (failure, *_) = step_failures(report)
    assert f"The catalog {catalog} is not a readable DuckDB file" in failure
    assert "`sentinel rebuild-catalog`" in failure
    # The summary command says the same, in one line.
    assert main(["summary"]) == 2
    assert "sentinel rebuild-catalog" in capsys.readouterr().out

    assert main(["rebuild-catalog"]) == 0
    said = capsys.readouterr().out
    assert "The old catalog is kept as" in said
    (kept,) = home.glob("warehouse.duckdb.set-aside-*")
    assert kept.read_bytes().startswith(b"\x00garbage")
    with duckdb.connect(str(catalog), read_only=True) as conn:
        after = {
            table: conn.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in before
        }
        assert conn.sql("SELECT count(*) FROM alerts").fetchall() == [(0,)]
    assert after == before
