"""The refresh schedule, the report that follows a refresh or backfill, the command-line
backfill documented in the README, and the instance settings in dagster.yaml."""

import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from sentinel_assets.contracts import REGIONS
from sentinel_assets.definitions import defs  # module helpers; tests take `definitions`
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.schedules import (
    BACKFILL_TAG,
    CRON_ENV,
    REFRESH_SIZE_TAG,
    REFRESH_TAG,
    build_refresh_schedule,
    regional_report_after_refresh,
)
from sentinel_assets.paths import CATALOG_FILE

pytestmark = pytest.mark.long(30)

REPO = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")
TICK = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def evaluate_report_sensor(instance: dg.DagsterInstance, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs())
    return regional_report_after_refresh(context)


def add_region_run(
    instance: dg.DagsterInstance, region: str, status: dg.DagsterRunStatus, tags: dict[str, str]
) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name="fleet_refresh",
        run_id=str(uuid.uuid4()),
        status=status,
        tags={**tags, "dagster/partition": region},
    )
    return instance.add_run(run)


def test_the_schedule_is_defined_stopped_and_daily_by_default(
    definitions: dg.Definitions, monkeypatch: pytest.MonkeyPatch
):
    schedule = definitions.get_repository_def().get_schedule_def("fleet_refresh_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "fleet_refresh"
    monkeypatch.delenv(CRON_ENV, raising=False)
    default = build_refresh_schedule()
    assert default.cron_schedule == "0 3 * * *" and default.execution_timezone == "UTC"


def test_the_cron_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CRON_ENV, "*/15 6-18 * * 1-5")
    assert build_refresh_schedule().cron_schedule == "*/15 6-18 * * 1-5"
    monkeypatch.setenv(CRON_ENV, "every night")
    with pytest.raises(ValueError, match=CRON_ENV):
        build_refresh_schedule()


def test_a_tick_requests_one_run_per_region(definitions: dg.Definitions):
    repository = definitions.get_repository_def()
    schedule = repository.get_schedule_def("fleet_refresh_schedule")
    context = dg.build_schedule_context(scheduled_execution_time=TICK, repository_def=repository)
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == list(REGIONS)
    assert len({r.run_key for r in requests}) == 8
    assert all("2026-11-23T03:00Z" in r.run_key for r in requests)
    assert all(r.tags[REFRESH_TAG] == "2026-11-23T03:00Z" for r in requests)
    assert all(r.tags[REFRESH_SIZE_TAG] == "8" for r in requests)


def test_the_report_follows_a_tick_once_every_region_succeeded(instance):
    tags = {REFRESH_TAG: "2026-11-23T03:00Z", REFRESH_SIZE_TAG: "8"}
    for region in REGIONS[:-1]:
        add_region_run(instance, region, dg.DagsterRunStatus.SUCCESS, tags)
    last = add_region_run(instance, REGIONS[-1], dg.DagsterRunStatus.STARTED, tags)
    assert evaluate_report_sensor(instance).run_requests == []

    instance.delete_run(last.run_id)  # stands in for the run finishing
    instance.add_run(last.with_status(dg.DagsterRunStatus.SUCCESS))
    result = evaluate_report_sensor(instance)
    [request] = result.run_requests
    assert request.run_key == "regional_report/schedule:2026-11-23T03:00Z"
    assert evaluate_report_sensor(instance, result.cursor).run_requests == []


def test_a_failed_region_withholds_the_report(instance):
    tags = {REFRESH_TAG: "2026-11-23T03:00Z", REFRESH_SIZE_TAG: "8"}
    for region in REGIONS:
        status = dg.DagsterRunStatus.FAILURE if region == "eu-west" else dg.DagsterRunStatus.SUCCESS
        add_region_run(instance, region, status, tags)
    result = evaluate_report_sensor(instance)
    assert result.run_requests == []
    assert "eu-west did not succeed" in result.skip_reason.skip_message


def test_a_tick_waits_for_a_region_that_has_no_run_yet(instance):
    tags = {REFRESH_TAG: "2026-11-23T03:00Z", REFRESH_SIZE_TAG: "8"}
    for region in REGIONS[1:]:
        add_region_run(instance, region, dg.DagsterRunStatus.SUCCESS, tags)
    result = evaluate_report_sensor(instance)
    assert result.run_requests == []
    assert result.skip_reason.skip_message == "schedule:2026-11-23T03:00Z wait"


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(DAGSTER), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_a_command_line_backfill_of_two_regions_then_the_report(
    definitions: dg.Definitions, sentinel_home: Path, monkeypatch: pytest.MonkeyPatch
):
    """The README's form: `dagster job backfill` queues exactly the chosen regions; the daemon
    (stood in for here: its runs take minutes) runs them; the sensor then asks for the report,
    and `dagster asset materialize` builds the reports over exactly those regions."""
    dagster_home = sentinel_home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", "500")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = run_cli(
        [
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            "fleet_refresh",
            "--partitions",
            "us-east,eu-west",
            "--noprompt",
        ],
        env,
    )
    assert "Launched backfill job" in out

    with dg.DagsterInstance.get() as instance:
        [backfill] = instance.get_backfills()
        assert backfill.partition_names == ["us-east", "eu-west"]
        queued = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill.backfill_id}))
        assert sorted(r.tags["dagster/partition"] for r in queued) == ["eu-west", "us-east"]
        assert {r.job_name for r in queued} == {"fleet_refresh"}
        assert {r.status for r in queued} == {dg.DagsterRunStatus.QUEUED}
        assert evaluate_report_sensor(instance).run_requests == []  # not run yet

        # What the daemon does with the queue, in process: the same partitions, same backfill.
        for run in queued:
            instance.delete_run(run.run_id)
            result = definitions.resolve_job_def("fleet_refresh").execute_in_process(
                partition_key=run.tags["dagster/partition"],
                instance=instance,
                resources=build_resources(sentinel_home),
                tags={BACKFILL_TAG: backfill.backfill_id},
            )
            assert result.success
        [request] = evaluate_report_sensor(instance).run_requests
        assert request.run_key == f"regional_report/backfill:{backfill.backfill_id}"

    run_cli(
        [
            "asset",
            "materialize",
            "-m",
            "sentinel_assets.definitions",
            "--select",
            "group:reports",
        ],
        env,
    )
    with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
        regions = conn.sql("SELECT DISTINCT region FROM regional_rank ORDER BY 1").fetchall()
    assert regions == [("eu-west",), ("us-east",)]


def test_dagster_yaml_loads_with_run_and_pool_limits(
    definitions: dg.Definitions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # its event log lives in DAGSTER_HOME
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 2
        # Both free slots fill at once: launches do not wait for each other's run worker.
        assert instance.run_coordinator.dequeue_use_threads
        assert instance.run_coordinator.dequeue_num_workers == 2
        assert config.pool_config.default_pool_limit == 1
        assert instance.run_retries_enabled
        assert not instance.run_retries_retry_on_asset_or_op_failure
    graph = definitions.resolve_asset_graph()
    for key in dg.AssetSelection.groups("reports").resolve(graph):
        assert graph.get(key).pools == {"duckdb_catalog"}, key
