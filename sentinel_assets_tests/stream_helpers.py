"""A real Mosquitto on 127.0.0.1 and real `sentinel consume` processes for the stream tests
(`test_stream.py`, `reliability/test_stream_faults.py`), and the accounting they assert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from sentinel_assets.stream.broker import BrokerUnavailable, running_broker
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.envelope import STREAM_SUFFIX
from sentinel_assets.telemetry.ingest import ingest_file
from sentinel_assets.telemetry.simulate import SimulationPlan, published
from sentinel_assets_tests.telemetry_helpers import json_line, v2, write_lines

PASSWORD = "broker-test-secret"


def broker_fixture(**options):
    """A fixture starting Mosquitto with `options` (`running_broker`), skipped with one line
    where it cannot be started."""

    @pytest.fixture
    def broker():
        root = Path(tempfile.mkdtemp(prefix="sentinel-broker-"))
        try:
            with running_broker(root, password=PASSWORD, **options) as running:
                yield running
        except BrokerUnavailable as error:
            pytest.skip(str(error))

    return broker


broker = broker_fixture()


def device_messages(days: int = 1, devices: int = 40) -> list[tuple[str, bytes]]:
    plan = SimulationPlan(days=days, devices_per_region=devices, regions=("eu-west", "us-east"))
    found = published(plan)
    # A payload whose region is not its topic's, and an empty one.
    mismatched = v2(region="eu-west", device_id="SN-EUW-99999999")
    found.append(("fleet/us-east/SN-USE-99999999/telemetry", json_line(mismatched).encode()))
    found.append(("fleet/eu-west/SN-EUW-99999998/telemetry", b""))
    return found


@pytest.fixture
def consumer(broker) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `sentinel consume` processes; any still running when the test ends (it failed
    half-way) is killed, never left behind."""
    started: list[subprocess.Popen] = []

    def start(
        landing: Path,
        *extra: str,
        password: str = PASSWORD,
        consumer_id: str = "test-consumer",
        url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        env = {**os.environ, **broker.env(), "SENTINEL_MQTT_PASSWORD": password, **(env or {})}
        command = [
            sys.executable, "-m", "sentinel_assets.cli.main", "consume",
            "--source", url or broker.url, "--landing", str(landing),
            "--consumer-id", consumer_id, "--batch-age", "0.5", *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
            print(f"consumer {proc.pid} still running at the end, killed; its output:\n{out}")


def landed_envelopes(landing: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(landing.glob(f"*{STREAM_SUFFIX}"))
        for line in path.read_text().splitlines()
    ]


def subscribed(landing: Path, consumer_id: str = "test-consumer") -> bool:
    """The consumer's broker confirmed its subscription (its status file says so)."""
    status = landing / ".stream" / consumer_id / "status.json"
    try:
        return json.loads(status.read_text())["subscribed"]
    except (OSError, ValueError, KeyError):
        return False


def wait_until(condition, timeout: float = 240) -> None:
    """Poll until `condition` holds; a generous bound, only there to turn a hang into a failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s"
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def ingest_all(landing: Path, lake_root: Path):
    return [ingest_file(p, lake_root).accounting for p in sorted(landing.glob(f"*{STREAM_SUFFIX}"))]


def the_same_messages_as_a_file(tmp_path: Path, sent: list[tuple[str, bytes]]) -> int:
    """Events an ingestion of the same payloads as one JSON Lines file accepts (the reference)."""
    reference = write_lines(
        tmp_path / "reference.jsonl",
        [p for t, p in sent if p and "SN-USE-99999999" not in t],
        header=False,
    )
    return ingest_file(reference, tmp_path / "reference-lake").accounting.accepted


def accepted_events(lake_root: Path) -> pl.DataFrame:
    return lake.scan_events(lake_root).collect()


def expected_payloads(sent: list[tuple[str, bytes]]) -> set[tuple[str, str | None]]:
    """What the landed envelopes must hold, at least once each."""
    return {(t, p.decode("utf-8")) for t, p in sent if _utf8(p)} | {
        (t, None) for t, p in sent if not _utf8(p)
    }


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def landed_payloads(landing: Path) -> set[tuple[str, str | None]]:
    return {(e["topic"], e.get("payload")) for e in landed_envelopes(landing)}


def all_landed(landing: Path, sent: list[tuple[str, bytes]]) -> bool:
    return landed_payloads(landing) >= expected_payloads(sent)


@dataclass
class StreamAccount:
    """published = events + duplicates dropped + dead letters, and what was lost or twice."""

    published: int
    consumed: int  # envelopes landed (at least once: redeliveries included)
    events: int
    duplicates: int
    dead_letters: int
    lost: int
    duplicated: int  # events twice in telemetry_events
    balanced: bool

    @property
    def holds(self) -> bool:
        return self.balanced and self.lost == 0 and self.duplicated == 0


def account(tmp_path: Path, landing: Path, lake_root: Path, sent) -> StreamAccount:
    """Ingest every landed batch and compare with ingesting the sent payloads once, as a file
    (the reference): the same events, each once, and every landed envelope accounted for."""
    accounts = ingest_all(landing, lake_root)
    consumed = len(landed_envelopes(landing))
    events = accepted_events(lake_root)
    reference = the_same_messages_as_a_file(tmp_path, sent)
    missing = len(expected_payloads(sent) - landed_payloads(landing))
    dead = sum(a.dead_letters for a in accounts)
    return StreamAccount(
        published=len(sent),
        consumed=consumed,
        events=events.height,
        duplicates=sum(a.duplicates for a in accounts),
        dead_letters=dead,
        lost=missing + max(reference - events.height, 0),
        duplicated=events.height - events["record_id"].n_unique(),
        balanced=all(a.balanced for a in accounts)
        and sum(a.accepted + a.duplicates + a.dead_letters for a in accounts) == consumed,
    )
