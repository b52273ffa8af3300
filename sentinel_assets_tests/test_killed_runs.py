"""A killed `sentinel` run never blocks the next one: its run is marked failed and its pool
slot freed, a step waiting for a slot is told who holds it, and ending `sentinel demo` ends
every process it started."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets.cli.main import main
from sentinel_assets.cli.stale_runs import (
    HOST_TAG,
    PID_TAG,
    process_gone,
    slot_waits,
    sweep_dead_runs,
)
from sentinel_assets.warehouse import CATALOG_POOL

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
HOLDER = textwrap.dedent(
    """
    import sys, time, pathlib
    import dagster as dg
    from sentinel_assets.cli.stale_runs import process_tags

    @dg.asset(pool=sys.argv[3])
    def report_table() -> None:
        pathlib.Path(sys.argv[1]).write_text("holding the slot")
        time.sleep(float(sys.argv[2]))

    defs = dg.Definitions(assets=[report_table], jobs=[dg.define_asset_job("hold")])
    with dg.DagsterInstance.get() as instance:
        defs.resolve_job_def("hold").execute_in_process(instance=instance, tags=process_tags())
    """
)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def run_with(tags: dict[str, str]) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="regional_report", tags=tags)


def test_a_run_whose_process_is_gone_is_dead_and_a_live_one_is_not():
    here = socket.gethostname()
    assert process_gone(run_with({PID_TAG: str(dead_pid()), HOST_TAG: here}), time.time())
    assert not process_gone(run_with({PID_TAG: str(os.getpid()), HOST_TAG: here}), time.time())
    # A pid reused by a process that started after the run is not the run's process.
    assert process_gone(run_with({PID_TAG: str(os.getpid()), HOST_TAG: here}), 0.0)
    # Another machine's run, or a run with no process tag, is never judged from here.
    assert not process_gone(run_with({PID_TAG: str(dead_pid()), HOST_TAG: "elsewhere"}), 0.0)
    assert not process_gone(run_with({}), 0.0)


@pytest.fixture
def instance_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An instance with the project's dagster.yaml (one slot in the catalog's pool)."""
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "data"))
    return home


def hold_slot(tmp_path: Path, name: str, seconds: float) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / name
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(marker), str(seconds), CATALOG_POOL],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return process, marker


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout_s} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_run_is_swept_and_the_waiting_step_then_runs(instance_home, tmp_path, capsys):
    holder, holding = hold_slot(tmp_path, "first", 600)
    waiter = None
    try:
        wait_for(holding.exists, 60, "the first run to hold the slot")
        waiter, waited = hold_slot(tmp_path, "second", 0)
        with dg.DagsterInstance.get() as instance:
            wait_for(
                lambda: (
                    instance.event_log_storage.get_concurrency_info(CATALOG_POOL).pending_step_count
                ),
                60,
                "the second run to queue for the slot",
            )
            (first,) = instance.event_log_storage.get_concurrency_info(CATALOG_POOL).claimed_slots
            # The waiting step is named with the run and process that hold the slot.
            (notice,) = slot_waits(instance, [CATALOG_POOL], waited_s=0)
            assert f"held by run {first.run_id[:8]} (hold, STARTED, process {holder.pid})" in (
                notice
            )
            assert "`sentinel free-slots` frees it" in notice
            assert sweep_dead_runs(instance) == []  # alive: never swept

            holder.send_signal(signal.SIGKILL)
            holder.wait()
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED

            assert main(["free-slots"]) == 0
            said = capsys.readouterr().out
            assert f"Run {first.run_id[:8]} (hold) was left unfinished by process" in said
            assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
            assert waiter.wait(timeout=60) == 0
            assert waited.exists()
            info = instance.event_log_storage.get_concurrency_info(CATALOG_POOL)
            assert info.claimed_slots == [] and info.pending_steps == []
    finally:
        for process in (holder, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def group_alive(group: int) -> list[str]:
    found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True)
    return found.stdout.split()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pgrep") is None, reason="pgrep (procps) is needed")
@pytest.mark.parametrize(
    ("runs", "ended"),
    [
        # region runs in worker processes, then the report run, stopped in the report
        (
            "per-region",
            {"fleet_refresh": dg.DagsterRunStatus.SUCCESS, "regional_report": "failed"},
        ),
        # the one run in the command's own process, stopped in its report steps
        ("one", {"fleet_and_reports": "failed"}),
    ],
)
def test_sigterm_ends_every_process_of_a_demo_and_leaves_no_stuck_run(
    instance_home, tmp_path, runs, ended
):
    # The signal is sent as soon as the test sees the slot taken; on a loaded machine the
    # demo may finish first (exit 0, nothing stopped). Such an attempt shows nothing, so the
    # scenario is tried again, up to three times; it must happen and pass once.
    for attempt in range(3):
        if _stop_a_demo_in_its_report_step(tmp_path / f"attempt-{attempt}", runs, ended):
            return
    pytest.fail("the demo finished before SIGTERM reached it, three times")


def _stop_a_demo_in_its_report_step(folder: Path, runs: str, ended: dict) -> bool:
    """SIGTERM a demo while a report step holds the catalog's slot and check that it ended
    every process and run; False when the demo had finished before the signal took effect."""
    folder.mkdir()
    log = folder / "demo.log"
    with dg.DagsterInstance.get() as instance:
        before = {run.run_id for run in instance.get_runs()}
    with open(log, "wb") as output:
        demo = subprocess.Popen(
            [
                str(BIN / "sentinel"),
                "demo",
                "--regions",
                "eu-west",
                "--devices-per-region",
                "200",
                "--runs",
                runs,
            ],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with dg.DagsterInstance.get() as instance:
            # Stop it while a report step holds the catalog's slot, the case that used to hang.
            wait_for(
                lambda: (
                    demo.poll() is not None
                    or instance.event_log_storage.get_concurrency_info(CATALOG_POOL).claimed_slots
                ),
                240,
                "the regional report to take the catalog slot",
            )
            assert demo.poll() is None, log.read_text()
            demo.send_signal(signal.SIGTERM)
            code = demo.wait(timeout=30)
            if code == 0 and "stopped by SIGTERM" not in log.read_text():
                return False  # it had finished its work: nothing was stopped
            assert code == 128 + signal.SIGTERM, log.read_text()
            wait_for(lambda: not group_alive(demo.pid), 15, "every demo process to end")
            new_runs = [run for run in instance.get_runs() if run.run_id not in before]
            statuses = {run.job_name: run.status for run in new_runs}
            failed = dg.DagsterRunStatus.FAILURE
            assert statuses == {job: failed if s == "failed" else s for job, s in ended.items()}
            assert instance.event_log_storage.get_concurrency_info(CATALOG_POOL).claimed_slots == []
        output = log.read_text()
        assert "stopped by SIGTERM; the runs in progress were ended" in output
        assert "Traceback" not in output
        return True
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
