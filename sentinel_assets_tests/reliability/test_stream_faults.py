"""7. Stream faults against a real Mosquitto: a consumer SIGKILLed mid-batch while devices
keep publishing, the broker restarted with SIGTERM mid-stream, two consumers sharing a
subscription with one killed, the landing disk read-only and then full, and hostile payloads
(malformed, empty, 1 MB, not UTF-8). After each: published = events + duplicates dropped +
dead letters, nothing lost, nothing twice in `telemetry_events` (a row each in the stream
table of `make reliability`)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from sentinel_assets.stream.publisher import publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets_tests.reliability.disks import fill, mount, tmpfs
from sentinel_assets_tests.reliability.table import sized
from sentinel_assets_tests.stream_helpers import (
    account,
    all_landed,
    device_messages,
    stop,
    subscribed,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.long(60)]


def messages(reduced_days: int = 1, full_days: int = 3, devices: int | None = None):
    """A few hundred messages in `make test`, ~10,000 in `make reliability`."""
    return device_messages(days=sized(reduced_days, full_days), devices=devices or sized(40, 400))


def settle_and_stop(landing: Path, sent, *procs: subprocess.Popen) -> str:
    """Wait until every message sent has landed, then SIGTERM the consumers; their output."""
    wait_until(lambda: all_landed(landing, sent))
    time.sleep(1.0)  # the last acknowledgements go out
    return "".join(stop(proc) for proc in procs)


def holds(stream_row, tmp_path: Path, landing: Path, sent) -> None:
    found = account(tmp_path, landing, tmp_path / "lake", sent)
    stream_row.record(found)
    assert found.balanced, found
    assert found.lost == 0 and found.duplicated == 0, found


@pytest.mark.reliability("7a. consumer SIGKILLed mid-batch, devices publishing meanwhile")
def test_a_consumer_killed_mid_batch_loses_nothing_and_repeats_nothing(
    broker, consumer, tmp_path, stream_row
):
    landing = tmp_path / "landing"
    sent = messages()
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
    settle_and_stop(landing, sent, consumer(landing))
    assert all(p.stat().st_size == 0 for p in journal.glob("*.part"))
    holds(stream_row, tmp_path, landing, sent)


@pytest.mark.reliability("7b. broker restarted with SIGTERM mid-stream")
def test_a_broker_restarted_mid_stream_loses_nothing(broker, consumer, tmp_path, stream_row):
    landing = tmp_path / "landing"
    sent = messages()
    third = len(sent) // 3
    address = broker_address(broker.url, broker.env())
    proc = consumer(landing, "--batch-age", "2")
    wait_until(lambda: subscribed(landing))
    publish(address, sent[:third])
    broker.stop(signal.SIGTERM)  # saves its state (persistence on) and exits
    time.sleep(1.0)  # the consumer sees the broker gone and backs off
    broker.start()
    publish(address, sent[third : 2 * third])  # possibly before the consumer is back
    wait_until(lambda: subscribed(landing))
    publish(address, sent[2 * third :])
    settle_and_stop(landing, sent, proc)
    holds(stream_row, tmp_path, landing, sent)


@pytest.mark.reliability("7c. two consumers share a subscription, one SIGKILLed")
def test_a_shared_subscription_survives_one_consumer_killed(broker, consumer, tmp_path, stream_row):
    """The killed consumer's share waits in its session at the broker until a supervisor
    restarts it under the same id (Mosquitto does not reroute it): nothing lost."""
    landing = tmp_path / "landing"
    sent = messages()
    half = len(sent) // 2
    address = broker_address(broker.url, broker.env())
    share = ("--share-group", "sentinel", "--batch-age", "2")
    a = consumer(landing, *share, consumer_id="consumer-a")
    b = consumer(landing, *share, consumer_id="consumer-b")
    wait_until(lambda: subscribed(landing, "consumer-a") and subscribed(landing, "consumer-b"))
    publish(address, sent[:half])
    b.kill()
    b.wait(timeout=10)
    publish(address, sent[half:])
    restarted = consumer(landing, *share, consumer_id="consumer-b")  # the supervisor
    settle_and_stop(landing, sent, a, restarted)
    holds(stream_row, tmp_path, landing, sent)
    per_consumer = {p.name.split("-0")[0] for p in landing.glob("consumer-*.mqtt.jsonl")}
    assert per_consumer == {"consumer-a", "consumer-b"}, "both consumers took a share"


@pytest.mark.reliability("7d. landing disk read-only, then full")
def test_an_unwritable_landing_disk_stops_acknowledgements_until_it_is_writable(
    broker, consumer, tmp_path, stream_row
):
    with tmpfs(tmp_path / "disk", 64, "7d") as disk:
        landing = disk / "landing"
        sent = messages()
        third = len(sent) // 3
        address = broker_address(broker.url, broker.env())
        proc = consumer(landing, "--batch-age", "1")
        wait_until(lambda: subscribed(landing))
        publish(address, sent[:third])
        wait_until(lambda: all_landed(landing, sent[:third]))
        mount("-o", "remount,ro", str(disk))
        publish(address, sent[third : 2 * third])  # the broker keeps them: not acknowledged
        time.sleep(3)
        mount("-o", "remount,rw", str(disk))
        wait_until(lambda: all_landed(landing, sent[: 2 * third]))
        filler = fill(disk, 0)
        publish(address, sent[2 * third :])
        time.sleep(3)
        filler.unlink()
        out = settle_and_stop(landing, sent, proc)
        holds(stream_row, tmp_path, landing, sent)
    assert "landing folder not writable" in out and "holding" in out
    assert "Read-only file system" in out and "No space left on device" in out  # both faults
    assert out.count("writable again") >= 2


HOSTILE_PAYLOADS = [
    ("fleet/eu-west/SN-EUW-90000001/telemetry", b"{not json"),
    ("fleet/eu-west/SN-EUW-90000002/telemetry", b""),
    ("fleet/eu-west/SN-EUW-90000003/telemetry", b'{"device_id": "' + b"x" * 1_000_000 + b'"}'),
    ("fleet/eu-west/SN-EUW-90000004/telemetry", b"\xff\xfe\x00garbage\x80"),
    ("fleet/eu-west/SN-EUW-90000005/telemetry", b"[1, 2, 3]"),
    ("fleet/not-a-region/SN-XXX-1/telemetry", b'{"device_id": "SN-XXX-1"}'),
]


@pytest.mark.reliability("7e. malformed, empty, 1 MB and non-UTF-8 payloads")
def test_hostile_payloads_end_as_dead_letters_once(broker, consumer, tmp_path, stream_row):
    landing = tmp_path / "landing"
    good = messages(1, 1, devices=10)
    sent = good[: len(good) // 2] + HOSTILE_PAYLOADS + good[len(good) // 2 :]
    proc = consumer(landing)
    wait_until(lambda: subscribed(landing))
    publish(broker_address(broker.url, broker.env()), sent)
    settle_and_stop(landing, sent, proc)
    holds(stream_row, tmp_path, landing, sent)
    assert stream_row.dead_letters >= len(HOSTILE_PAYLOADS)
