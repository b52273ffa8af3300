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


@dg.asset(
    partitions_def=dg.StaticPartitionsDefinition(["a", "b", "c"]),
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("positive", asset="ranged")],
)
def ranged(context: dg.AssetExecutionContext):
    yield dg.Output({key: len(key) for key in context.partition_keys})
    yield dg.AssetCheckResult(passed=True, check_name="positive")


RANGE_TAGS = {
    "dagster/asset_partition_range_start": "a",
    "dagster/asset_partition_range_end": "c",
}


def run_ranged(home: Path, batch_size: str, monkeypatch: pytest.MonkeyPatch):
    """One run over the range a..c; its events and the index's per-partition records."""
    monkeypatch.setenv(instance_storage.EVENT_BATCH_SIZE_ENV, batch_size)
    batches: list[int] = []
    store_batch = PooledSqliteEventLogStorage.store_event_batch

    def counted(self: PooledSqliteEventLogStorage, events) -> None:
        batches.append(len(events))
        store_batch(self, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", counted)
    with instance_from(home) as instance:
        result = dg.materialize(
            [ranged],
            instance=instance,
            tags=RANGE_TAGS,
            resources={"io_manager": dg.mem_io_manager},
        )
        assert result.success
        kinds = [e.dagster_event_type for e in instance.all_logs(result.run_id)]
        records = instance.fetch_materializations(dg.AssetKey("ranged"), limit=10).records
        planned = instance.get_latest_planned_materialization_info(dg.AssetKey("ranged"), "b")
        return list(batches), kinds, sorted(r.partition_key for r in records), planned is not None


def test_a_batch_is_stored_as_the_same_events_one_transaction_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    homes = {}
    for name in ("one_by_one", "batched"):
        homes[name] = tmp_path / name
        homes[name].mkdir()
        shutil.copy(REPO / "dagster.yaml", homes[name] / "dagster.yaml")
    one_by_one = run_ranged(homes["one_by_one"], "0", monkeypatch)
    batched = run_ranged(homes["batched"], str(instance_storage.EVENT_BATCH_SIZE), monkeypatch)
    assert one_by_one[0] == []  # Dagster's default: every event on its own
    assert batched[0] and max(batched[0]) > 1  # the planned events, the range's materializations
    assert batched[1:] == one_by_one[1:]
    assert batched[2] == ["a", "b", "c"]


def test_a_batch_that_fails_leaves_none_of_its_events(home: Path, monkeypatch: pytest.MonkeyPatch):
    with instance_from(home) as instance:
        (run_id,) = run_tiny(instance, 1)
        storage = instance.event_log_storage
        events = list(instance.all_logs(run_id))[:3]
        before = len(storage.get_logs_for_run(run_id))
        stored: list[object] = []
        store_event = PooledSqliteEventLogStorage.store_event

        def failing_third(self: PooledSqliteEventLogStorage, event) -> None:
            if len(stored) == 2:
                raise RuntimeError("disk I/O error")
            stored.append(event)
            store_event(self, event)

        monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event", failing_third)
        with pytest.raises(RuntimeError, match="disk I/O error"):
            storage.store_event_batch(events)
        assert len(stored) == 2
        assert len(storage.get_logs_for_run(run_id)) == before  # both rolled back
        monkeypatch.undo()
        storage.store_event(events[0])  # the file is not left locked
        assert len(storage.get_logs_for_run(run_id)) == before + 1


def test_dagsters_migration_scripts_are_read_once_per_process(home: Path):
    script = """
import alembic.script.base as base
loads = []
read = base.ScriptDirectory._load_revisions
def counted(self):
    loads.append(1)
    return read(self)
base.ScriptDirectory._load_revisions = counted
from sentinel_assets.cli.instance import command_instance
with command_instance() as instance:
    instance.get_runs_count()
print(len(loads))
"""
    child = subprocess.run(
        [sys.executable, "-c", script],
        env={"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["1"]  # runs, schedules and the index: one read for all


def test_other_alembic_script_locations_are_not_shared(tmp_path: Path):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    instance_storage.share_alembic_scripts()
    dagsters = Config()
    dagsters.set_main_option("script_location", instance_storage.DAGSTER_SCRIPTS)
    assert ScriptDirectory.from_config(dagsters) is ScriptDirectory.from_config(dagsters)
    (tmp_path / "versions").mkdir()
    other = Config()
    other.set_main_option("script_location", str(tmp_path))
    assert ScriptDirectory.from_config(other) is not ScriptDirectory.from_config(other)
