"""The embedded instance's event log (`defs.instance_storage`): Dagster's own SQLite files,
written through connections kept open, read by any other process as before."""

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets.defs import instance_storage
from sentinel_assets.defs.instance_storage import PooledSqliteEventLogStorage
from sentinel_assets_tests.instances import instance_from

REPO = Path(__file__).resolve().parents[1]
READER = """
import sys, dagster as dg
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    runs = instance.get_runs()
    print(len(runs), sum(len(instance.all_logs(r.run_id)) for r in runs))
"""


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
def tiny(context: dg.AssetExecutionContext) -> int:
    return len(context.partition_key)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def run_tiny(instance: dg.DagsterInstance, times: int) -> list[str]:
    return [
        dg.materialize([tiny], instance=instance, partition_key="ab"[i % 2]).run_id
        for i in range(times)
    ]


def test_the_repo_instance_uses_it_in_dagsters_own_layout(home: Path):
    with instance_from(home) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        (run_id,) = run_tiny(instance, 1)
    assert (home / "storage" / "index.db").is_file()
    assert (home / "storage" / f"{run_id}.db").is_file()


def test_another_process_reads_every_event_while_connections_stay_open(
    home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(instance_storage, "OPEN_SHARDS", 3)
    with instance_from(home) as instance:
        run_ids = run_tiny(instance, 5)  # more runs than engines kept: the oldest are closed
        storage = instance.event_log_storage
        assert len(storage._engines) <= 3
        events = sum(len(instance.all_logs(run_id)) for run_id in run_ids)
        materialized = instance.fetch_materializations(dg.AssetKey("tiny"), limit=10).records
        assert len(materialized) == 5
        reader = subprocess.run(
            [sys.executable, "-c", READER, str(home)],
            env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reader.returncode == 0, reader.stderr[-2000:]
        assert reader.stdout.split() == ["5", str(events)]


def test_wiping_the_instance_closes_its_connections_first(home: Path):
    with instance_from(home) as instance:
        run_tiny(instance, 2)
        instance.wipe()  # deletes the runs' database files
        assert set(instance.event_log_storage._engines) <= {"index"}
        assert instance.get_runs() == []
        assert run_tiny(instance, 1)  # and writes again afterwards


def test_without_dagster_home_or_base_dir_it_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(dg.DagsterInvariantViolationError, match="DAGSTER_HOME is not set"):
        PooledSqliteEventLogStorage()


def test_event_connections_commit_without_an_fsync_each_in_wal_mode(home: Path):
    with instance_from(home) as instance:
        (run_id,) = run_tiny(instance, 1)
        storage = instance.event_log_storage
        for shard in ("index", run_id):
            with storage._connect(shard) as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_schema_probes_are_answered_once_and_a_missing_table_is_not_remembered(
    home: Path, monkeypatch: pytest.MonkeyPatch
):
    probes: list[str] = []
    dagsters = instance_storage.SqliteEventLogStorage.has_table

    def counted(self: PooledSqliteEventLogStorage, table_name: str) -> bool:
        probes.append(table_name)
        return dagsters(self, table_name)

    monkeypatch.setattr(instance_storage.SqliteEventLogStorage, "has_table", counted)
    with instance_from(home) as instance:
        run_tiny(instance, 3)
        storage = instance.event_log_storage
        assert probes.count("asset_event_tags") == 1  # three materializations, one probe
        assert not storage.has_table("no_such_table")
        assert not storage.has_table("no_such_table")
        assert probes.count("no_such_table") == 2
