"""The consumer's journal without a broker: for arbitrary interleavings of valid, resent and
malformed messages with consumer crashes at any point of a flush, every published message is
accounted for exactly once after ingestion (at least once on disk, once in the lake)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_assets.stream.journal import Journal
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.envelope import STREAM_SUFFIX, envelope
from sentinel_assets.telemetry.ingest import ingest_file
from sentinel_assets_tests.telemetry_helpers import json_line, v2, write_lines

KINDS = st.sampled_from(["valid", "resend", "malformed", "binary"])
STEPS = st.sampled_from(
    ["receive", "receive", "receive", "flush", "crash", "crash_unacked", "rotate"]
)


def message(kind: str, n: int) -> tuple[str, bytes]:
    topic = "fleet/us-east/SN-USE-00000001/telemetry"
    if kind == "malformed":
        return topic, b'{"device_id": "SN-USE-%08d", broken' % n
    if kind == "binary":
        return topic, b"\xff\xfe%d" % n
    retry = 0 if kind == "resend" else n + 1  # a resend repeats reading 0
    return topic, json_line(v2(retry_count=retry % 10, battery_pct=10 + n % 80)).encode()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(KINDS, min_size=1, max_size=30), steps=st.lists(STEPS, max_size=60))
def test_every_message_is_accounted_for_once_whatever_the_crashes(kinds, steps):
    root = Path(tempfile.mkdtemp())
    landing, lake_root = root / "landing", root / "lake"
    published = [message(kind, n) for n, kind in enumerate(kinds)]
    broker = list(range(len(published)))  # unacknowledged, in delivery order
    journal = Journal(landing, "c", max_messages=5, max_age_s=1e9)
    journal.recover()
    pending: list[int] = []
    clock = itertools.count(1)  # each receipt has its own arrival time, as on the wire
    for step in [*steps, "flush", "rotate"]:
        if step == "receive" and broker:
            pending.append(broker.pop(0))
        elif step in ("flush", "crash_unacked") and pending:
            journal.append([envelope(*published[i], next(clock)) for i in pending])  # durable
            if step == "flush":
                pending = []  # acknowledged
            else:  # killed after the fsync, before the acknowledgement: redelivered
                broker = pending + broker
                pending = []
                journal = Journal(landing, "c", max_messages=5, max_age_s=1e9)
                journal.recover()
        elif step == "crash":  # killed before the fsync: never acknowledged
            broker, pending = pending + broker, []
            journal = Journal(landing, "c", max_messages=5, max_age_s=1e9)
            journal.recover()
        elif step == "rotate" or journal.due():
            journal.rotate()
    while broker:  # the consumer catches up
        journal.append([envelope(*published[broker.pop(0)], next(clock))])
    journal.close()

    batches = sorted(landing.glob(f"*{STREAM_SUFFIX}"))
    landed = [line for b in batches for line in b.read_bytes().splitlines()]
    assert len(landed) >= len(published)  # at least once: nothing lost
    accounts = [ingest_file(b, lake_root).accounting for b in batches]
    assert sum(a.accepted + a.duplicates + a.dead_letters for a in accounts) == len(landed)
    reference = write_lines(root / "ref.jsonl", [p for _, p in published], header=False)
    expected = ingest_file(reference, root / "ref-lake").accounting
    events = lake.scan_events(lake_root).collect()
    assert events["record_id"].is_unique().all()
    assert events.height == expected.accepted  # each event once, as from one file
    dead = sum(a.dead_letters for a in accounts)
    assert dead == expected.dead_letters  # each broken message once


def test_a_restarted_consumer_never_reuses_a_batch_name_the_sensor_moved_away(tmp_path):
    landing = tmp_path / "landing"
    names = []
    for _ in range(3):  # three consumer lifetimes; the sensor moves each batch aside
        journal = Journal(landing, "c")
        journal.recover()
        journal.append([envelope(*message("valid", len(names)), 1)])
        batch = journal.rotate()
        journal.close()
        names.append(batch.name)
        batch.rename(tmp_path / f"ingested-{len(names)}")
    assert len(set(names)) == 3


def test_a_lost_sequence_file_costs_names_not_messages(tmp_path):
    landing = tmp_path / "landing"
    journal = Journal(landing, "c")
    journal.recover()
    journal.append([envelope(*message("valid", 0), 1)])
    first = journal.rotate()
    journal.close()
    (journal.folder / "next_sequence").write_text("garbage")
    again = Journal(landing, "c")
    again.recover()  # the landed batch is still there: its number is not taken again
    again.append([envelope(*message("valid", 1), 2)])
    second = again.rotate()
    assert first.exists() and second.exists() and first != second
