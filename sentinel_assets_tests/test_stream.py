"""Telemetry as it streams, against a real Mosquitto on 127.0.0.1 (Debian's package, which
`make servers` installs as root): devices publish at QoS 1, `sentinel consume` lands durable
batches, ingestion takes them like any file. Credentials and TLS: the right ones connect,
wrong ones and an untrusted certificate end in one sentence, anonymous clients are refused.
The faults (kills, restarts, shared subscriptions, a read-only disk) are in
`reliability/test_stream_faults.py`."""

from __future__ import annotations

import polars as pl
import pytest

from sentinel_assets.stream.publisher import publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets.telemetry import lake
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
