"""6. Alerts under failure: with a webhook that times out, answers 500 or refuses
connections, every alert row is kept and retried with backoff; the alert daemon is SIGKILLed
in the middle of a failing delivery round and restarted; once the endpoint is back, every
alert arrives exactly once (never lost, never repeated)."""

import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from sentinel_assets import alerts, paths
from sentinel_assets.defs.sensors import failed_checks
from sentinel_assets_tests.reliability.shared import (
    environment,
    instance_at,
    materialize,
    new_home,
    start_module,
)
from sentinel_assets_tests.reliability.table import ScenarioRow, sized
from sentinel_assets_tests.webhook import HANG, serving

pytestmark = pytest.mark.long(35)

REGIONS = ("eu-west", "af-south")
DEVICES = sized(300, 5_000)
FAILING_GATE = {"resources": {"settings": {"config": {"gates": {"max_quarantine_rate": 0.0}}}}}
FAULTS = {"timeout": HANG, "HTTP 500": 500, "connection refused": None}
DAEMON = "sentinel_assets_tests.reliability.alert_daemon"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alert_rows(home: Path) -> dict[str, tuple[str, int]]:
    with duckdb.connect(str(paths.catalog_path(home)), read_only=True) as conn:
        rows = conn.sql(
            "SELECT alert_id, delivery_status, delivery_attempts FROM alerts"
        ).fetchall()
    return {alert_id: (status, attempts) for alert_id, status, attempts in rows}


@pytest.fixture(scope="module")
def failed_gates(tmp_path_factory: pytest.TempPathFactory, definitions: dg.Definitions):
    """Two region runs whose quarantine gate failed, and the ids of the alerts they owe."""
    home = new_home(tmp_path_factory.mktemp("failed-gates") / "sentinel")
    jobs = [("fleet_refresh", region) for region in REGIONS]
    with instance_at(home) as instance:
        results = materialize(definitions, home, DEVICES, jobs, instance, FAILING_GATE)
        assert not any(result.success for result in results)
        runs = instance.get_runs()
        expected = {a.alert_id for run in runs for a in failed_checks(instance, run.run_id)}
    assert len(expected) == len(REGIONS)
    return home, expected


@pytest.mark.slow
@pytest.mark.reliability("6. alerts under failure")
def test_every_alert_survives_a_failing_webhook_and_a_killed_daemon_and_arrives_once(
    scenario: ScenarioRow, failed_gates, tmp_path: Path
):
    built, expected = failed_gates
    problems: dict[str, list[str]] = {}
    for name, fault in FAULTS.items():
        home = tmp_path / name.replace(" ", "-") / "sentinel"
        shutil.copytree(built, home)
        port = free_port()
        env = {
            **environment(home, DEVICES),
            alerts.WEBHOOK_ENV: f"http://127.0.0.1:{port}/hook",
            alerts.TIMEOUT_ENV: "0.5",
            alerts.BACKOFF_ENV: "0.2",
        }
        cursor = tmp_path / f"{name}.cursor"
        found: list[str] = []
        accepted: list[str | None] = []
        # The first alert is delivered, then the endpoint fails (or nothing listens at all).
        script = [200] + [fault] * 50 if fault is not None else None
        if script is not None:
            with serving(script, port=port, hang_s=1.0) as receiver:
                daemon = start_module(DAEMON, str(cursor), env=env)
                # One delivered, then the owed one tried, retried after its backoff, ...
                wait_for(lambda: len(receiver.answers) >= 3, 60, f"{name}: a failing round")
                daemon.send_signal(signal.SIGKILL)  # in the middle of the retries
                daemon.wait(timeout=10)
                accepted += receiver.keys
        else:
            daemon = start_module(DAEMON, str(cursor), env=env)
            wait_for(cursor.exists, 60, f"{name}: a first tick")
            time.sleep(1.0)  # a few more rounds against a closed port
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
        scenario.runs += 1
        kept = alert_rows(home)
        if set(kept) != expected:
            found.append(f"alert rows {sorted(kept)} after the kill, expected {sorted(expected)}")
        owed = {a for a, (status, _) in kept.items() if status == alerts.PENDING}
        if not owed:
            found.append("no alert was left owed by the failing endpoint")

        # The endpoint comes back; the restarted daemon delivers what is still owed.
        with serving([], port=port) as receiver:
            daemon = start_module(DAEMON, str(cursor), env=env)
            try:
                wait_for(
                    lambda got=accepted, now=receiver: set(got + now.keys) >= expected,
                    60,
                    f"{name}: delivery",
                )
                time.sleep(1.0)  # five more ticks: nothing is sent again
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(timeout=10)
            accepted += receiver.keys
        scenario.runs += 1
        final = alert_rows(home)
        lost = len(expected - set(accepted))
        duplicated = len(accepted) - len(set(accepted))
        if any(status != alerts.DELIVERED for status, _ in final.values()):
            found.append(f"not all delivered: {final}")
        scenario.fault(not found and not lost and not duplicated, lost, duplicated)
        if found or lost or duplicated:
            problems[name] = [*found, f"lost {lost}, repeated {duplicated}: {accepted}"]
    assert problems == {}
    assert scenario.survived == len(FAULTS)
