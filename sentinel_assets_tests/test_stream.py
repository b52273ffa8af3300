"""Telemetry as it streams, against a real Mosquitto on 127.0.0.1 (Debian's package, which
`make servers` installs as root): devices publish at QoS 1, `sentinel consume` lands durable
batches, ingestion takes them like any file. Credentials and TLS: the right ones connect,
wrong ones and an untrusted certificate end in one sentence, anonymous clients are refused.
The faults (kills, restarts, shared subscriptions, a read-only disk) are in
`reliability/test_stream_faults.py`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sentinel_assets.stream.broker import MOSQUITTO, free_port
from sentinel_assets.stream.consumer import Consumer, ConsumerSettings
from sentinel_assets.stream.publisher import publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets.telemetry import lake
from sentinel_assets_tests.instances import instance_from
from sentinel_assets_tests.stream_helpers import (
    accepted_events,
    device_messages,
    ingest_all,
    landed_envelopes,
    stop,
    subscribed,
    the_same_messages_as_a_file,
    wait_until,
)

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_wrong_or_missing_credentials_end_in_one_sentence(broker, consumer, tmp_path, password):
    proc = consumer(tmp_path / "landing", password=password)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    [line] = [line for line in out.splitlines() if line.strip()]
    assert "refused the connection" in line and "Traceback" not in out


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The consumer's /metrics as {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_consumer_exposes_its_figures_to_prometheus(broker, consumer, tmp_path):
    landing, port = tmp_path / "landing", free_port()
    proc = consumer(landing, "--metrics-port", str(port))
    sent = device_messages()
    wait_until(lambda: subscribed(landing))
    publish(broker_address(broker.url, broker.env()), sent)
    wait_until(lambda: len(landed_envelopes(landing)) >= len(sent))
    wait_until(lambda: scrape(port)[("sentinel_stream_queued_messages", ())] == 0)
    metrics = scrape(port)
    assert metrics[("sentinel_stream_messages_total", ())] == len(sent)
    assert metrics[("sentinel_stream_batches_total", ())] == len(list(landing.glob("*.jsonl")))
    assert metrics[("sentinel_stream_connected", ())] == 1
    last = {
        dict(labels)["region"]: value
        for (name, labels), value in metrics.items()
        if name == "sentinel_stream_last_message_timestamp_seconds"
    }
    assert set(last) == {topic.split("/")[1] for topic, _ in sent}
    assert all(0 < time.time() - at < 300 for at in last.values())
    stop(proc)


def test_a_metrics_port_in_use_ends_in_one_sentence(broker, consumer, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = consumer(tmp_path / "landing", "--metrics-port", str(taken.getsockname()[1]))
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    [line] = [line for line in out.splitlines() if line.strip()]
    assert "Cannot serve metrics on 127.0.0.1:" in line and "--metrics-port" in line


def test_a_backlog_is_taken_half_an_in_flight_window_at_a_time(broker, tmp_path):
    """Mosquitto hands a reconnecting session its whole offline queue at once, whatever the
    receive maximum: the consumer itself bounds what it holds unacknowledged (so its memory
    does not grow with the backlog)."""
    address = broker_address(broker.url, broker.env())
    settings = ConsumerSettings(landing=tmp_path / "landing", consumer_id="backlog",
                                receive_maximum=100, batch_age_s=0.5)  # fmt: skip
    Consumer(address, settings).run(max_seconds=1)  # the persistent session exists
    sent = device_messages(days=2, devices=200)
    publish(address, sent)  # while the consumer is away
    consumer, held = Consumer(address, settings), []
    deliver = consumer.client.on_delivery

    def on_delivery(*message) -> None:
        deliver(*message)
        held.append(len(consumer.pending))
        if len(held) == len(sent):
            consumer.stop()  # flushes, acknowledges and lands on the way out

    consumer.client.on_delivery = on_delivery
    stats = consumer.run(max_seconds=120)
    assert stats.messages == len(sent) > 10 * settings.receive_maximum
    assert max(held) <= settings.receive_maximum // 2 + 1  # + the packet loop() reads itself


def test_the_stream_demo_accounts_for_every_message_and_records_its_runs(tmp_path):
    """`make stream-demo` at a few seconds' size: its own broker, consumer and publisher."""
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"{MOSQUITTO} not found: run `make servers` (as root)")
    env = {**os.environ, "SENTINEL_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_HOME", None)
    demo = subprocess.run(
        [sys.executable, "-m", "sentinel_assets.cli.main", "stream-demo",
         "--seconds", "3", "--rate", "500", "--tick", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "unaccounted 0" in demo.stdout and "Traceback" not in demo.stderr
    assert "first events in telemetry_events" in demo.stdout
    with instance_from(tmp_path / "home" / "dagster") as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="ingest_landing_batch"))
    assert runs and all(run.is_success for run in runs)
