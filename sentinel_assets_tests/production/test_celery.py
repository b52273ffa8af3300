"""All 8 region partitions through the daemon's run queue, steps on 2 Celery workers (Redis
broker, PostgreSQL instance), equal row for row to the embedded run."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel_assets.cli import orchestrate
from sentinel_assets.contracts import REGIONS
from sentinel_assets_tests.production.conftest import INSTANCE_YAML, environment
from sentinel_assets_tests.servers import running_redis, server_or_skip
from sentinel_assets_tests.webserver import _die_with_parent, _kill_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
CELERY_YAML = REPO / "deploy" / "production" / "celery.yaml"
DEVICES = "1500"
FLEET_TABLES = (
    "raw_fleet", "corrupted_fleet", "chaos_ledger", "sanitized_fleet", "quarantine",
    "campaign_status", "recovery_decisions", "recovery_outcomes",
)  # fmt: skip


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


def tables(home: Path) -> dict[str, pl.DataFrame]:
    frames = {}
    for table in FLEET_TABLES:
        frame = pl.read_parquet(home / "tables" / table / "*.parquet")
        frames[table] = frame.sort(frame.columns, nulls_last=True)
    return frames


def test_eight_regions_on_two_celery_workers_equal_the_embedded_run(postgres, redis, tmp_path):
    postgres.query("DROP DATABASE IF EXISTS dagster_celery WITH (FORCE)", db="postgres")
    postgres.query("CREATE DATABASE dagster_celery", db="postgres")
    home = tmp_path / "celery"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(INSTANCE_YAML, home / "dagster" / "dagster.yaml")
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
    }
    procs = []
    try:
        for name in ("w1", "w2"):
            procs.append(start(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                 "-y", str(CELERY_YAML), "-n", f"{name}@sentinel", "--",
                 "--concurrency=1", "--without-gossip", "--without-mingle"],
                env, tmp_path / f"{name}.log",
            ))  # fmt: skip
        procs.append(
            start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env,
                  tmp_path / "daemon.log")
        )  # fmt: skip
        started = time.monotonic()
        subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j",
             "fleet_refresh", "--partitions", ",".join(REGIONS), "--noprompt"],
            cwd=REPO, env=env, check=True, capture_output=True,
        )  # fmt: skip
        instance_env = {"DAGSTER_HOME": env["DAGSTER_HOME"], **postgres.env(),
                        "SENTINEL_PG_DAGSTER_DB": "dagster_celery"}  # fmt: skip
        with environment(instance_env), dg.DagsterInstance.get() as instance:
            if True:
                deadline = time.monotonic() + 900
                while True:
                    # the region runs; the report sensor follows them with its own run
                    runs = instance.get_runs(dg.RunsFilter(job_name="fleet_refresh"))
                    done = [r for r in runs if r.is_finished]
                    if len(runs) == len(REGIONS) and len(done) == len(runs):
                        break
                    assert time.monotonic() < deadline, [r.status for r in runs]
                    time.sleep(2)
                elapsed = time.monotonic() - started
                failed = [r.tags.get("dagster/partition") for r in runs if not r.is_success]
                assert not failed, (failed, (tmp_path / "daemon.log").read_text()[-3000:])
                workers = set()
                for run in runs:
                    for record in instance.all_logs(run.run_id):
                        event = record.dagster_event
                        if event is None or event.event_type_value != "ENGINE_EVENT":
                            continue
                        metadata = event.engine_event_data.metadata or {}
                        if "Celery worker" in metadata:
                            workers.add(str(metadata["Celery worker"].value))
                # The run queue's limit held: never more than 2 of the 8 runs at once.
                spans = [
                    (r.start_time, r.end_time)
                    for r in instance.get_run_records(dg.RunsFilter(job_name="fleet_refresh"))
                    if r.start_time is not None
                ]
                most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
                assert len(spans) == len(REGIONS) and most <= 2
                # dagster-celery appends the host: "w1@sentinel@<host>".
                assert {worker.split("@")[0] for worker in workers} == {"w1", "w2"}
    finally:
        for proc in procs:
            _kill_group(proc, grace=10)
    print(f"\n8 regions x {DEVICES} devices through Celery (2 workers): {elapsed:.1f} s")

    embedded = tmp_path / "embedded"
    with environment({"SENTINEL_HOME": str(embedded), "DAGSTER_HOME": str(embedded / "dagster"),
                      "SENTINEL_DEVICES_PER_REGION": DEVICES}):  # fmt: skip
        t0 = time.monotonic()
        assert all(o.success for o in orchestrate.run_fleet(list(REGIONS), parallel=2).regions)
        print(f"embedded in-process run of the same: {time.monotonic() - t0:.1f} s")
    distributed, local = tables(home), tables(embedded)
    for table in FLEET_TABLES:
        assert_frame_equal(distributed[table], local[table], check_exact=True)
