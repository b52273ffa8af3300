"""All 8 region partitions through the daemon's run queue, steps on 2 Celery workers (Redis
broker, PostgreSQL instance, Delta tables), one worker SIGKILLed mid-step:
its step is redelivered to the other, readers only ever see whole partitions, and the tables
equal the embedded run's row for row."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from sentinel_assets import delta
from sentinel_assets.cli import orchestrate
from sentinel_assets.contracts import PARTITION_KEY, REGIONS
from sentinel_assets.defs.delta_io import PARTITIONED_TABLES
from sentinel_assets_tests.production.conftest import INSTANCE_YAML, environment
from sentinel_assets_tests.servers import running_redis, server_or_skip
from sentinel_assets_tests.webserver import _die_with_parent, _kill_group

pytestmark = [pytest.mark.slow, pytest.mark.long(200)]
REPO = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
CELERY_YAML = REPO / "deploy" / "production" / "celery.yaml"
DEVICES = "1500"
# The kill comes once this many region runs have succeeded: late, so the rest of the refresh
# on one worker stays short, with both workers already seen running steps.
KILL_AFTER_RUNS = 6
# The shipped visibility timeout (1800 s) is longer than this test may wait. Here it only has
# to exceed the longest step (a few seconds at this size); workers look for expired messages
# every second instead of every minute, and the lock a worker holds while it looks expires
# after 5 s instead of 300 (a worker killed while holding it delays every redelivery so long).
VISIBILITY_TIMEOUT = 20
REDELIVERY_WAIT = 180  # seconds after the kill before the test calls the run hung
STEP_START = re.compile(r"fleet_refresh - ([0-9a-f-]{36}) - \d+ - (\w+) - STEP_START")


@pytest.fixture(scope="module")
def redis():
    yield from server_or_skip(running_redis(), "Redis for the Celery test")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def shipped_config_source() -> dict:
    config = yaml.safe_load(CELERY_YAML.read_text())["execution"]["config"]
    return config["config_source"]


def test_the_shipped_celery_config_redelivers_a_dead_workers_step():
    """Acknowledged when the step ends, one message per worker process, and a visibility
    timeout: without them a SIGKILLed worker's step is lost and its run waits forever."""
    source = shipped_config_source()
    assert source["task_acks_late"] is True
    assert source["task_reject_on_worker_lost"] is True
    assert source["worker_prefetch_multiplier"] == 1
    transport = source["broker_transport_options"]
    # dagster-celery writes config_source verbatim: an `env:` mapping would reach Celery as is.
    assert not [key for key, value in transport.items() if isinstance(value, dict)]
    assert transport["visibility_timeout"] >= 600  # longer than any step at 10M devices


def celery_yaml_for_the_kill(folder: Path) -> Path:
    """The shipped celery.yaml with a visibility timeout this test can wait for."""
    config = yaml.safe_load(CELERY_YAML.read_text())
    transport = config["execution"]["config"]["config_source"]["broker_transport_options"]
    transport.update(
        visibility_timeout=VISIBILITY_TIMEOUT, unacked_restore_interval=1,
        unacked_restore_throttle=1, unacked_mutex_expire=5,
    )  # fmt: skip
    path = folder / "celery.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Reader(threading.Thread):
    """A dashboard polling every Delta table while the workers commit: the rows per region of
    each snapshot it saw."""

    def __init__(self, root: str, options: dict[str, str] | None) -> None:
        super().__init__(daemon=True)
        self.root, self.options = root, options
        self.seen: list[tuple[str, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for table in PARTITIONED_TABLES:
                uri = delta.table_uri(self.root, table)
                if not delta.table_exists(uri, self.options):
                    continue
                counts = delta.scan(uri, self.options).group_by(PARTITION_KEY).len().collect()
                self.seen += [(table, region, rows) for region, rows in counts.iter_rows()]


def kill_at_next_step(worker: subprocess.Popen, log: Path, skip_bytes: int) -> tuple[str, str]:
    """SIGKILL the worker's whole process group (main process and pool child, as when its
    machine goes away) as soon as its log shows a step starting after `skip_bytes`; returns
    (run id, step key) of the step it was running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = STEP_START.search(log.read_bytes()[skip_bytes:].decode(errors="replace"))
        if match:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            return match.group(1), match.group(2)
        time.sleep(0.05)
    raise AssertionError(f"worker 1 started no step within 120 s:\n{log.read_text()[-2000:]}")


def broker_state(redis) -> str:
    """What the broker holds, for a hung run's failure message: queue lengths, the
    unacknowledged messages' delivery times and the restore lock."""
    import redis as client

    with client.Redis.from_url(redis.url(0)) as conn:
        lists = {
            key.decode(): conn.llen(key) for key in conn.scan_iter() if conn.type(key) == b"list"
        }
        unacked = [(tag.decode(), round(time.time() - at)) for tag, at in
                   conn.zrange("unacked_index", 0, -1, withscores=True)]  # fmt: skip
        lock = conn.ttl("unacked_mutex")
    return f"queues {lists}, unacknowledged (tag, seconds ago) {unacked}, restore lock ttl {lock}"


def delta_tables(root: str, options: dict[str, str] | None, columns: dict) -> dict:
    frames = {}
    for table in PARTITIONED_TABLES:
        frame = delta.scan(delta.table_uri(root, table), options).collect()
        frame = frame.select(columns[table])
        frames[table] = frame.sort(frame.columns, nulls_last=True)
    return frames


def parquet_tables(home: Path) -> dict[str, pl.DataFrame]:
    frames = {}
    for table in PARTITIONED_TABLES:
        frame = pl.read_parquet(home / "tables" / table / "*.parquet")
        frames[table] = frame.sort(frame.columns, nulls_last=True)
    return frames


def step_events(instance: dg.DagsterInstance, run_id: str, step: str) -> list[tuple[str, str]]:
    """(event type, Celery worker or '') of one step's events, in order."""
    events = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or record.step_key != step:
            continue
        worker = ""
        if event.event_type_value == "ENGINE_EVENT":
            metadata = event.engine_event_data.metadata or {}
            if "Celery worker" in metadata:
                worker = str(metadata["Celery worker"].value).split("@")[0]
        events.append((event.event_type_value, worker))
    return events


def test_eight_regions_on_two_celery_workers_survive_a_killed_worker(postgres, redis, tmp_path):
    postgres.query("DROP DATABASE IF EXISTS dagster_celery WITH (FORCE)", db="postgres")
    postgres.query("CREATE DATABASE dagster_celery", db="postgres")
    home = tmp_path / "celery"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(INSTANCE_YAML, home / "dagster" / "dagster.yaml")
    # Delta tables in a local folder: the same transaction log and commit protocol as on the
    # object store (test_delta.py runs them against the S3 emulator), without moto serving
    # every read of every step in Python.
    root = str(tmp_path / "delta")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # workers exec `celery`
        **postgres.env(),
        "SENTINEL_PG_DAGSTER_DB": "dagster_celery",
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SENTINEL_DEVICES_PER_REGION": DEVICES,
        "SENTINEL_EXECUTOR": "celery",
        "SENTINEL_CELERY_BROKER": redis.url(0),
        "SENTINEL_CELERY_BACKEND": redis.url(1),
        "SENTINEL_STORAGE": "delta",
        "SENTINEL_DELTA_ROOT": root,
    }
    celery_yaml = celery_yaml_for_the_kill(tmp_path)
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2", "daemon")}
    procs = {}
    options = None
    reader = Reader(root, options)
    instance_env = {"DAGSTER_HOME": env["DAGSTER_HOME"], **postgres.env(),
                    "SENTINEL_PG_DAGSTER_DB": "dagster_celery"}  # fmt: skip
    with environment(instance_env), dg.DagsterInstance.get():
        pass  # the schema first: processes that all find an empty database race to create it
    try:
        for name in ("w1", "w2"):
            procs[name] = start(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(celery_yaml), "-n", f"{name}@sentinel", "--",
                 "--concurrency=1", "--without-gossip", "--without-mingle"],
                env, logs[name],
            )  # fmt: skip
        procs["daemon"] = start(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, logs["daemon"]
        )
        started = time.monotonic()
        subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j",
             "fleet_refresh", "--partitions", ",".join(REGIONS), "--noprompt"],
            cwd=REPO, env=env, check=True, capture_output=True,
        )  # fmt: skip
        reader.start()
        with environment(instance_env), dg.DagsterInstance.get() as instance:
            fleet_runs = dg.RunsFilter(job_name="fleet_refresh")
            deadline = time.monotonic() + 600
            while sum(r.is_success for r in instance.get_runs(fleet_runs)) < KILL_AFTER_RUNS:
                assert time.monotonic() < deadline, [r.status for r in instance.get_runs()]
                time.sleep(1)
            killed_run, killed_step = kill_at_next_step(
                procs["w1"], logs["w1"], logs["w1"].stat().st_size
            )
            killed_at = time.monotonic()
            while True:
                # the region runs; the report sensor follows them with its own run
                runs = instance.get_runs(fleet_runs)
                if len(runs) == len(REGIONS) and all(r.is_finished for r in runs):
                    break
                assert time.monotonic() < killed_at + REDELIVERY_WAIT, (
                    f"the run hangs: {killed_step} of run {killed_run}, running on worker 1 when "
                    f"it was killed, did not finish within {REDELIVERY_WAIT} s; runs: "
                    f"{[r.status.value for r in runs]}; broker: {broker_state(redis)}; worker 2:\n"
                    + logs["w2"].read_text()[-2000:]
                )
                time.sleep(1)
            elapsed = time.monotonic() - started
            redelivered = time.monotonic() - killed_at
            failed = [r.tags.get("dagster/partition") for r in runs if not r.is_success]
            assert not failed, (failed, logs["daemon"].read_text()[-3000:])
            # The killed step started on worker 1, never finished there, and was run again,
            # to success, by worker 2 in the same run (nothing relaunched the run).
            events = step_events(instance, killed_run, killed_step)
            ran_on = [worker for kind, worker in events if worker]
            assert ran_on[0] == "w1" and ran_on[-1] == "w2", events
            assert [kind for kind, _ in events].count("STEP_START") == 2, events
            assert events[-1][0] == "STEP_SUCCESS", events
            workers = set()
            for run in runs:
                for record in instance.all_logs(run.run_id):
                    event = record.dagster_event
                    if event is None or event.event_type_value != "ENGINE_EVENT":
                        continue
                    metadata = event.engine_event_data.metadata or {}
                    if "Celery worker" in metadata:
                        workers.add(str(metadata["Celery worker"].value))
            # dagster-celery appends the host: "w1@sentinel@<host>".
            assert {worker.split("@")[0] for worker in workers} == {"w1", "w2"}
            # The run queue's limit held: never more than 2 of the 8 runs at once.
            spans = [
                (r.start_time, r.end_time)
                for r in instance.get_run_records(fleet_runs)
                if r.start_time is not None
            ]
            most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
            assert len(spans) == len(REGIONS) and most <= 2
    finally:
        reader.stop.set()
        if reader.is_alive():
            reader.join(timeout=30)
        for proc in procs.values():
            _kill_group(proc, grace=10)
    print(
        f"\n8 regions x {DEVICES} devices through Celery (2 workers, worker 1 SIGKILLed in "
        f"{killed_step}): {elapsed:.1f} s, of which {redelivered:.1f} s after the kill"
    )

    embedded = tmp_path / "embedded"
    with environment({"SENTINEL_HOME": str(embedded), "DAGSTER_HOME": str(embedded / "dagster"),
                      "SENTINEL_DEVICES_PER_REGION": DEVICES}):  # fmt: skip
        t0 = time.monotonic()
        assert all(o.success for o in orchestrate.run_fleet(list(REGIONS), parallel=2).regions)
        print(f"embedded in-process run of the same: {time.monotonic() - t0:.1f} s")
    local = parquet_tables(embedded)
    distributed = delta_tables(root, options, {t: f.columns for t, f in local.items()})
    for table in PARTITIONED_TABLES:
        assert_frame_equal(distributed[table], local[table], check_exact=True)
    # Every snapshot a reader took held whole partitions: a region's rows, when present at all,
    # were exactly its final rows, never a killed step's half-written files.
    final = {
        (table, region): rows
        for table in PARTITIONED_TABLES
        for region, rows in delta.scan(delta.table_uri(root, table), options)
        .group_by(PARTITION_KEY)
        .len()
        .collect()
        .iter_rows()
    }
    assert reader.seen, "the reader saw no snapshot while the run was going"
    partial = [(t, r, n) for t, r, n in reader.seen if n != final[(t, r)]]
    assert not partial, partial[:10]
