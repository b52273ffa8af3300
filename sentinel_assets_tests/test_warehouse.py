import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sentinel_assets import warehouse


def test_a_partition_replaces_only_its_own_file(tmp_path):
    root = tmp_path / "tables"
    east = warehouse.partition_file(root, "raw_fleet", "us-east")
    west = warehouse.partition_file(root, "raw_fleet", "us-west")
    warehouse.write_partition(pl.DataFrame({"region": ["us-east"], "n": [1]}), east)
    warehouse.write_partition(pl.DataFrame({"region": ["us-west"], "n": [2]}), west)
    warehouse.write_partition(pl.DataFrame({"region": ["us-east"] * 2, "n": [3, 4]}), east)
    assert warehouse.read_partition(east)["n"].to_list() == [3, 4]
    assert warehouse.read_partition(west)["n"].to_list() == [2]


def test_a_write_killed_midway_leaves_the_previous_shard_intact(tmp_path, monkeypatch):
    path = warehouse.partition_file(tmp_path, "raw_fleet", "us-east")
    warehouse.write_partition(pl.DataFrame({"n": [1, 2, 3]}), path)

    def crash(self, file, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        warehouse.write_partition(pl.DataFrame({"n": [9]}), path)
    monkeypatch.undo()
    assert warehouse.read_partition(path)["n"].to_list() == [1, 2, 3]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_views_expose_every_region_and_pick_up_new_shards(tmp_path):
    root = tmp_path / "tables"
    for region, n in [("us-east", 2), ("eu-west", 3)]:
        frame = pl.DataFrame({"region": [region] * n})
        warehouse.write_partition(frame, warehouse.partition_file(root, "quarantine", region))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        assert warehouse.create_views(conn, root) == ["quarantine"]
        assert conn.sql("SELECT count(*) FROM quarantine").fetchall() == [(5,)]
        warehouse.write_partition(
            pl.DataFrame({"region": ["af-south"]}),
            warehouse.partition_file(root, "quarantine", "af-south"),
        )
        assert conn.sql("SELECT count(*) FROM quarantine").fetchall() == [(6,)]


def _view_sql(conn: duckdb.DuckDBPyConnection, name: str) -> str:
    [(sql,)] = conn.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchall()
    return sql


def test_ensure_views_creates_missing_views_keeps_current_ones_and_repoints_moved_ones(
    tmp_path, monkeypatch
):
    here, there = tmp_path / "here" / "tables", tmp_path / "there" / "tables"
    for root, n in [(here, 2), (there, 7)]:
        for table in ("quarantine", "raw_fleet"):
            frame = pl.DataFrame({"region": ["us-east"] * n})
            warehouse.write_partition(frame, warehouse.partition_file(root, table, "us-east"))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        warehouse.create_view(conn, here, "quarantine")
        warehouse.create_view(conn, there, "raw_fleet")  # a catalog copied from another folder
        created: list[str] = []
        create_view = warehouse.create_view
        monkeypatch.setattr(
            warehouse,
            "create_view",
            lambda conn, root, table: (created.append(table), create_view(conn, root, table)),
        )
        assert warehouse.ensure_views(conn, here) == ["quarantine", "raw_fleet"]
        assert created == ["raw_fleet"]
        assert conn.sql("SELECT count(*) FROM quarantine").fetchall() == [(2,)]
        assert conn.sql("SELECT count(*) FROM raw_fleet").fetchall() == [(2,)]  # re-pointed
        assert conn.sql("SELECT is_unhealthy('failed')").fetchall() == [(True,)]
        assert conn.sql("SELECT count(*) FROM alerts").fetchall() == [(0,)]


def test_paths_with_quotes_are_quoted_not_spliced(tmp_path):
    root = tmp_path / "it's here"
    warehouse.write_partition(
        pl.DataFrame({"x": [1]}), warehouse.partition_file(root, "raw_fleet", "us-east")
    )
    with duckdb.connect() as conn:
        warehouse.create_view(conn, root, "raw_fleet")
        assert conn.sql("SELECT x FROM raw_fleet").fetchall() == [(1,)]


@pytest.mark.parametrize("bad", ["raw_fleet; DROP TABLE x", "Raw", "../etc"])
def test_table_names_are_identifiers(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid table name"):
        warehouse.partition_file(tmp_path, bad, "us-east")


def test_unknown_regions_never_reach_a_path(tmp_path):
    with pytest.raises(ValueError, match="unknown region"):
        warehouse.partition_file(tmp_path, "raw_fleet", "../../etc")


def test_a_missing_shard_says_what_to_materialize(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize raw_fleet"):
        warehouse.read_partition(warehouse.partition_file(tmp_path, "raw_fleet", "us-east"))


def _hold_lock(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the catalog open read-write for `seconds`."""
    script = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "time.sleep(float(sys.argv[2]))"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(database), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_writer_waits_for_the_catalog_lock_then_names_its_holder(tmp_path: Path):
    database = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(database)).close()
    holder = _hold_lock(database, 30)
    try:
        started = time.monotonic()
        with pytest.raises(warehouse.CatalogLockedError) as raised:
            warehouse.connect_waiting(database, {}, wait_s=1.5)
        assert 1.0 <= time.monotonic() - started < 10
        assert f"stayed locked by PID {holder.pid} (" in str(raised.value)
        assert warehouse.LOCK_WAIT_ENV in str(raised.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_gets_the_catalog_once_the_lock_is_released_within_the_wait(tmp_path: Path):
    database = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(database)).close()
    holder = _hold_lock(database, 1.0)
    try:
        conn = warehouse.connect_waiting(database, {}, wait_s=30)
        assert conn.execute("SELECT 42").fetchall() == [(42,)]
        conn.close()
    finally:
        holder.kill()
        holder.wait()
