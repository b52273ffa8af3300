"""The stream's health as Dagster shows it: the consumers' own figures (each writes
`<landing>/.stream/<consumer>/status.json` every few seconds) merged, and which regions have
gone silent. A silent region is the first sign of a broken gateway or a bad rollout.

No MQTT and no Dagster here: the consumer writes the files, `defs/stream_sensors.py` reads
them through these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_assets.stream.journal import STATE_DIR
from sentinel_assets.telemetry.envelope import STREAM_SUFFIX

STATUS_FILE = "status.json"
# A consumer whose status is older than this is taken as not running (it rewrites it every
# `consumer.STATUS_INTERVAL_S` seconds).
CONSUMER_STALE_S = 60.0


@dataclass(frozen=True)
class ConsumerStatus:
    consumer: str
    started_at: float
    written_at: float
    subscribed: bool
    messages: int
    messages_per_second: float
    queued: int  # received (durable or not yet) but not landed as a batch
    last_message_at: Mapping[str, float] = field(default_factory=dict)
    messages_by_region: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> ConsumerStatus:
        return cls(
            consumer=str(raw["consumer"]),
            started_at=float(raw.get("started_at") or raw["written_at"]),
            written_at=float(raw["written_at"]),
            subscribed=bool(raw.get("subscribed")),
            messages=int(raw.get("messages") or 0),
            messages_per_second=float(raw.get("messages_per_second") or 0.0),
            queued=int(raw.get("queued") or 0),
            last_message_at={str(k): float(v) for k, v in dict(raw["last_message_at"]).items()},
            messages_by_region={str(k): int(v) for k, v in dict(raw["messages_by_region"]).items()},
        )

    def running(self, now: float) -> bool:
        return now - self.written_at <= CONSUMER_STALE_S


def consumer_status(landing: Path, consumer_id: str) -> dict:
    """One consumer's last status as written (empty until it has written one)."""
    try:
        return json.loads((landing / STATE_DIR / consumer_id / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def read_statuses(landing: Path) -> tuple[list[ConsumerStatus], list[str]]:
    """Every consumer's last status under `landing`, and one sentence per unreadable file."""
    statuses, problems = [], []
    for path in sorted((landing / STATE_DIR).glob(f"*/{STATUS_FILE}")):
        try:
            statuses.append(ConsumerStatus.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            problems.append(f"{path} is not a readable consumer status ({error}).")
    return statuses, problems


@dataclass(frozen=True)
class StreamHealth:
    """All consumers together at `now` (epoch seconds)."""

    now: float
    consumers: tuple[ConsumerStatus, ...]

    @property
    def running(self) -> tuple[ConsumerStatus, ...]:
        return tuple(c for c in self.consumers if c.running(self.now))

    @property
    def messages_per_second(self) -> float:
        return round(float(sum(c.messages_per_second for c in self.running)), 1)

    @property
    def queued(self) -> int:
        return sum(c.queued for c in self.running)

    @property
    def messages(self) -> int:
        return sum(c.messages for c in self.consumers)

    def last_message_at(self) -> dict[str, float]:
        """The newest message of each region over every consumer (a shared subscription
        spreads one region over several)."""
        latest: dict[str, float] = {}
        for status in self.consumers:
            for region, at in status.last_message_at.items():
                latest[region] = max(at, latest.get(region, at))
        return latest

    def messages_by_region(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for status in self.consumers:
            for region, count in status.messages_by_region.items():
                totals[region] = totals.get(region, 0) + count
        return totals

    def watched_since(self) -> float | None:
        """Since when some consumer has been listening (None: no consumer is running)."""
        running = self.running
        return min(c.started_at for c in running) if running else None


@dataclass(frozen=True)
class Silence:
    region: str
    last_message_at: float | None  # None: nothing from it since the consumers started
    quiet_from: float  # its last message, or when the consumers started listening
    silent_s: float

    def sentence(self) -> str:
        minutes = self.silent_s / 60
        if self.last_message_at is None:
            return f"{self.region}: nothing received in the {minutes:.0f} min the stream is watched"
        return f"{self.region}: silent for {minutes:.0f} min"


def silent_regions(health: StreamHealth, regions: Iterable[str], silence_s: float) -> list[Silence]:
    """Regions of the fleet with no message for `silence_s` while a consumer is running (no
    running consumer: nothing can be said about the devices, so no region is judged)."""
    since = health.watched_since()
    if since is None:
        return []
    latest = health.last_message_at()
    found = []
    for region in regions:
        heard = latest.get(region)
        quiet_from = max(heard, since) if heard is not None else since
        if health.now - quiet_from >= silence_s:
            found.append(Silence(region, heard, quiet_from, health.now - quiet_from))
    return found


def stopped_consumer(health: StreamHealth, silence_s: float) -> ConsumerStatus | None:
    """The last consumer to report, when consumers ran here but none has reported for
    `silence_s`: every region goes quiet at once (the broker keeps the messages meanwhile)."""
    if health.running or not health.consumers:
        return None
    last = max(health.consumers, key=lambda c: c.written_at)
    return last if health.now - last.written_at >= silence_s else None


def stream_batch_totals(manifests: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """What ingestion made of the landed stream batches (their lake manifests)."""
    totals = {"batches": 0, "accepted": 0, "duplicates": 0, "dead_letters": 0}
    for manifest in manifests:
        if not str(manifest.get("source_file", "")).lower().endswith(STREAM_SUFFIX):
            continue
        totals["batches"] += 1
        for key in ("accepted", "duplicates", "dead_letters"):
            totals[key] += int(manifest.get(key) or 0)
    return totals
