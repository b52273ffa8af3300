"""2. Concurrent writers and readers, through the daemon's run queue (the repository's
dagster.yaml: 2 runs at a time) as the UI launches them: every region several times over,
runs of the same region side by side, while an analyst reads the catalog read-only; then an
analyst holds it read-write. Nothing is lost or duplicated; a run that cannot get the catalog
waits, retrying, and then fails with a message naming the lock's holder, rather than hang."""

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import REGIONS
from sentinel_assets_tests.reliability.shared import (
    REPO,
    environment,
    fleet_lost_and_duplicated,
    instance_at,
    materialize,
    new_home,
    snapshot,
    stuck,
    torn,
)
from sentinel_assets_tests.reliability.table import ScenarioRow, sized
from sentinel_assets_tests.webserver import (
    DagsterUI,
    _die_with_parent,
    _kill_group,
    running_webserver,
)

pytestmark = pytest.mark.long(100)

FLEET = tuple(REGIONS)[: sized(1, 8)]
ROUNDS = sized(2, 3)
DEVICES = sized(100_000, 100_000)  # runs last longer than the queue takes to start the next
HOLD_S = sized(0, 60)  # round 2's read-write session: at least this, and until the runs end
LOCK_WAIT_S = sized(4, 20)  # SENTINEL_CATALOG_LOCK_WAIT_S for the runs
RUNS_WAIT_S = sized(300, 900)
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def start_analyst(home: Path, mode: str, seconds: float, folder: Path) -> subprocess.Popen[str]:
    analyst = subprocess.Popen(
        [sys.executable, "-m", "sentinel_assets_tests.reliability.analyst",
         str(paths.catalog_path(home)), mode, str(seconds), str(folder / f"{mode}.json"),
         str(folder / f"{mode}.stop")],
        cwd=REPO, stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent,
    )  # fmt: skip
    assert analyst.stdout is not None and analyst.stdout.readline().strip() == "held"
    return analyst


def stop_analyst(analyst: subprocess.Popen[str], mode: str, folder: Path) -> dict:
    (folder / f"{mode}.stop").touch()
    analyst.wait(timeout=60)
    return json.loads((folder / f"{mode}.json").read_text())


def start_daemon(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:  # the daemon keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip


def wait_for(ui: DagsterUI, run_ids: list[str]) -> dict[str, dg.DagsterRunStatus]:
    deadline = time.monotonic() + RUNS_WAIT_S
    while True:
        statuses = {run_id: ui.client.get_run_status(run_id) for run_id in run_ids}
        if all(status in DONE for status in statuses.values()):
            return statuses
        assert time.monotonic() < deadline, f"runs still going after {RUNS_WAIT_S} s: {statuses}"
        time.sleep(1)


def same_region_overlaps(instance: dg.DagsterInstance, run_ids: list[str]) -> int:
    """Pairs of runs of one region that were running at the same time."""
    records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
    spans = [
        (r.dagster_run.tags.get("dagster/partition"), r.start_time, r.end_time)
        for r in records
        if r.start_time and r.end_time
    ]
    return sum(
        1
        for i, (region, start, end) in enumerate(spans)
        for other, start2, end2 in spans[i + 1 :]
        if region == other and start < end2 and start2 < end
    )


@pytest.mark.slow
@pytest.mark.reliability("2. concurrent writers and readers")
def test_queued_runs_side_by_side_with_analysts_lose_nothing_and_never_hang(
    scenario: ScenarioRow, definitions: dg.Definitions, tmp_path: Path
):
    home = new_home(tmp_path / "sentinel")
    jobs = [("fleet_refresh", region) for region in FLEET] + [("regional_report", None)]
    assert all(r.success for r in materialize(definitions, home, DEVICES, jobs))
    expected = snapshot(home)
    rows = {region: expected[f"sanitized_fleet/region={region}.parquet"].height for region in FLEET}
    env = {**environment(home, DEVICES), warehouse.LOCK_WAIT_ENV: str(LOCK_WAIT_S)}
    problems: dict[str, list[str]] = {}
    daemon_log = tmp_path / "daemon.log"
    daemon: subprocess.Popen[bytes] | None = None
    try:
        with (
            running_webserver(REPO / "workspace.yaml", env, log_path=tmp_path / "web.log") as url,
            instance_at(home) as instance,
        ):
            ui = DagsterUI(url)

            # Round 1: every region ROUNDS times, queued in pairs of the same region, while
            # an analyst keeps reading the fleet view read-only. The daemon starts once all
            # are queued, so its first tick launches the first pair together: they overlap
            # however fast a run is.
            reader = start_analyst(home, "ro", RUNS_WAIT_S, tmp_path)
            queued = [ui.launch_partition("fleet_refresh", r) for r in FLEET for _ in range(ROUNDS)]
            daemon = start_daemon(env, daemon_log)
            statuses = wait_for(ui, queued)
            seen = stop_analyst(reader, "ro", tmp_path)
            scenario.runs += len(queued)
            found = [
                f"run {i} {s.value}"
                for i, s in statuses.items()
                if s is not dg.DagsterRunStatus.SUCCESS
            ]
            found += [f"the analyst's read failed: {e}" for e in seen["errors"][:3]]
            found += [
                f"the analyst saw {counts} rows of {region}, not {rows[region]}"
                for region, counts in seen["counts"].items()
                if counts != [rows[region]]
            ]
            if not seen["reads"]:
                found.append("the analyst never read")
            overlaps = same_region_overlaps(instance, queued)
            if not overlaps:
                found.append("no two runs of one region ran at the same time")
            state = snapshot(home)
            found += [f"differs: {t}" for t in torn(state, expected, expected)]
            lost, duplicated = fleet_lost_and_duplicated(expected, state)
            problems["read-only analyst"] = found
            # Faults: the reader, and each pair of same-region runs that overlapped.
            for _ in range(1 + overlaps):
                scenario.fault(not found and not lost and not duplicated)
            scenario.records_lost, scenario.duplicates = lost, duplicated

            # Round 2: an analyst holds the catalog read-write (until the runs are done, and
            # at least HOLD_S). The report waits LOCK_WAIT_S and fails naming the holder;
            # region runs (Parquet shards only) go on.
            holder = start_analyst(home, "rw", RUNS_WAIT_S, tmp_path)
            held_at = time.monotonic()
            report = ui.client.submit_job_execution("regional_report")
            regions = [ui.launch_partition("fleet_refresh", r) for r in FLEET]
            statuses = wait_for(ui, [report, *regions])
            waited = time.monotonic() - held_at
            holder_pid = holder.pid
            found = [
                f"region run {i} {statuses[i].value}"
                for i in regions
                if statuses[i] is not dg.DagsterRunStatus.SUCCESS
            ]
            if statuses[report] is not dg.DagsterRunStatus.FAILURE:
                found.append(f"the report got a locked catalog: {statuses[report].value}")
            else:
                messages = " ".join(ui.run_error_messages(report))
                if (
                    f"stayed locked by PID {holder_pid}" not in messages
                    or warehouse.LOCK_WAIT_ENV not in messages
                ):
                    found.append(f"the lock and its holder are not named: {messages[:500]}")
            time.sleep(max(0.0, HOLD_S - (time.monotonic() - held_at)))
            stop_analyst(holder, "rw", tmp_path)
            retried = ui.client.submit_job_execution("regional_report")
            statuses = wait_for(ui, [retried])
            scenario.runs += 2 + len(regions)
            if statuses[retried] is not dg.DagsterRunStatus.SUCCESS:
                found.append(f"the report after the lock was released: {statuses[retried].value}")
            state = snapshot(home)
            found += [f"differs: {t}" for t in torn(state, expected, expected)]
            found += stuck(instance)
            lost, duplicated = fleet_lost_and_duplicated(expected, state)
            problems["read-write lock held"] = found
            scenario.fault(not found and not lost and not duplicated, lost, duplicated)
    finally:
        if daemon is not None:
            _kill_group(daemon)
    print(
        f"\nround 2: the report failed {waited:.0f} s after the lock was taken "
        f"(waiting {LOCK_WAIT_S} s)"
    )
    assert problems == {name: [] for name in problems}, daemon_log.read_text()[-3000:]
