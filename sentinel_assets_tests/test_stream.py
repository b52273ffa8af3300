"""Telemetry as it streams, against a real Mosquitto on 127.0.0.1 (Debian's package, which
`make servers` installs as root): devices publish at QoS 1, `sentinel consume` lands durable
batches, ingestion takes them like any file. Nothing lost, nothing twice, whatever happens
to the consumer; wrong credentials end in one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from sentinel_assets.stream.broker import BrokerUnavailable, running_broker
from sentinel_assets.stream.publisher import publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.envelope import STREAM_SUFFIX
from sentinel_assets.telemetry.ingest import ingest_file
from sentinel_assets.telemetry.simulate import SimulationPlan, published
from sentinel_assets_tests.telemetry_helpers import json_line, v2, write_lines

pytestmark = pytest.mark.slow
PASSWORD = "broker-test-secret"


@pytest.fixture
def broker():
    # Not under pytest's tmp_path: as root Mosquitto drops to the `mosquitto` user, which
    # cannot enter root's private pytest folders; a fresh folder of /tmp it owns works.
    root = Path(tempfile.mkdtemp(prefix="sentinel-broker-"))
    try:
        with running_broker(root, password=PASSWORD) as running:
            yield running
    except BrokerUnavailable as error:
        pytest.skip(str(error))


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

    def start(landing: Path, *extra: str, password: str = PASSWORD) -> subprocess.Popen:
        env = {**os.environ, **broker.env(), "SENTINEL_MQTT_PASSWORD": password}
        command = [
            sys.executable, "-m", "sentinel_assets.cli.main", "consume", "--source", broker.url,
            "--landing", str(landing), "--consumer-id", "test-consumer", "--batch-age", "0.5",
            *extra,
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


def subscribed(landing: Path) -> bool:
    """The consumer's broker confirmed its subscription (its status file says so)."""
    status = landing / ".stream" / "test-consumer" / "status.json"
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


def test_published_messages_end_as_events_once_or_dead_letters_with_topic(
    broker, consumer, tmp_path
):
    landing, lake_root = tmp_path / "landing", tmp_path / "lake"
    proc = consumer(landing)
    sent = device_messages()
    wait_until(lambda: subscribed(landing))
    assert publish(broker_address(broker.url, broker.env()), sent) == len(sent)
    wait_until(lambda: len(landed_envelopes(landing)) >= len(sent))
    out = stop(proc)
    assert "batch " in out and "messages" in out  # one log line per batch

    envelopes = landed_envelopes(landing)
    assert len(envelopes) == len(sent)  # nothing was redelivered on a clean run
    accounts = ingest_all(landing, lake_root)
    assert all(a.balanced for a in accounts)
    assert sum(a.accepted + a.duplicates + a.dead_letters for a in accounts) == len(sent)
    events = accepted_events(lake_root)
    assert events["record_id"].is_unique().all()
    assert events.height == the_same_messages_as_a_file(tmp_path, sent)
    dead = pl.read_parquet(lake_root / lake.DEAD_LETTERS)
    by_reason = dict(dead.group_by("reason").len().rows())
    assert by_reason["region:topic_mismatch"] == 1 and by_reason["payload:empty"] == 1
    assert dead["topic"].null_count() == 0 and dead["message_id"].null_count() == 0


def test_a_consumer_killed_mid_stream_loses_nothing_and_repeats_nothing(broker, consumer, tmp_path):
    landing, lake_root = tmp_path / "landing", tmp_path / "lake"
    sent = device_messages(days=2)
    half = len(sent) // 2
    address = broker_address(broker.url, broker.env())
    proc = consumer(landing, "--batch-age", "30")  # nothing lands before the kill
    journal = landing / ".stream" / "test-consumer"
    wait_until(lambda: subscribed(landing))
    publish(address, sent[:half])
    wait_until(lambda: sum(p.stat().st_size for p in journal.glob("*.part")) > 0)
    proc.kill()  # SIGKILL: mid-batch, some messages durable, some not yet acknowledged
    proc.wait(timeout=10)
    publish(address, sent[half:])  # while the consumer is down: kept by its session
    restarted = consumer(landing)
    wait_until(
        lambda: (
            {(e["topic"], e.get("payload")) for e in landed_envelopes(landing)}
            >= {(t, p.decode("utf-8", "replace")) for t, p in sent if b"\xff" not in p}
        )
    )
    time.sleep(1.0)  # the last acknowledgements
    stop(restarted)
    accounts = ingest_all(landing, lake_root)
    landed = len(landed_envelopes(landing))
    assert landed >= len(sent)  # at least once ...
    assert sum(a.accepted + a.duplicates + a.dead_letters for a in accounts) == landed
    events = accepted_events(lake_root)
    assert events["record_id"].is_unique().all()  # ... and each event once
    assert events.height == the_same_messages_as_a_file(tmp_path, sent)
    assert not list(journal.glob("*.part")) or all(
        p.stat().st_size == 0 for p in journal.glob("*.part")
    )


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_wrong_or_missing_credentials_end_in_one_sentence(broker, consumer, tmp_path, password):
    proc = consumer(tmp_path / "landing", password=password)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    [line] = [line for line in out.splitlines() if line.strip()]
    assert "refused the connection" in line and "Traceback" not in out
