"""The consumer's durable journal: messages are appended and fsynced before they are
acknowledged, and a full or old journal becomes a landing batch by one atomic rename.

    <landing>/.stream/<consumer>/<sequence>.mqtt.jsonl.part   # the open journal (never read
                                                             #  by the landing sensor: `.`)
    <landing>/<consumer>-<sequence>.mqtt.jsonl               # a finished batch

Crash semantics, which make "at least once from the broker + dedupe" exactly once:

* killed before a flush's fsync: those messages were never acknowledged; the broker
  redelivers them (persistent session), and a torn last line is cut off on recovery;
* killed after the fsync, before the acknowledgement: the messages are in the journal *and*
  redelivered; ingestion keeps them once (same device, time and payload; a malformed one by
  its message identity);
* killed after the acknowledgement, before the rename: `recover` renames the journal into
  the landing folder when the consumer starts again, so nothing acknowledged is lost.

No MQTT here (the consumer calls it); no Dagster.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_assets.telemetry.envelope import STREAM_SUFFIX

STATE_DIR = ".stream"
PART = ".part"
NEXT_SEQUENCE = "next_sequence"  # batch names stay unique after the sensor moves them away


class LandingNotWritable(OSError):
    """The landing folder refused a write: messages stay unacknowledged (the broker keeps
    them) until it is writable again."""


@dataclass
class Journal:
    """One consumer's open journal in `landing`, rotated at `max_messages` or `max_age_s`."""

    landing: Path
    consumer: str
    max_messages: int = 50_000
    max_age_s: float = 5.0
    sequence: int = 0
    messages: int = 0
    opened_at: float = field(default_factory=time.monotonic)
    _handle: object | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        return self.landing / STATE_DIR / self.consumer

    def _part(self, sequence: int) -> Path:
        return self.folder / f"{sequence:012d}{STREAM_SUFFIX}{PART}"

    def batch_path(self, sequence: int) -> Path:
        return self.landing / f"{self.consumer}-{sequence:012d}{STREAM_SUFFIX}"

    def recover(self) -> list[Path]:
        """Land every journal a killed consumer left (cut at its last complete line); return
        the batches made. Call once at start, before the first append."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError, ValueError):
            self.sequence = int((self.folder / NEXT_SEQUENCE).read_text())
        landed = []
        for part in sorted(self.folder.glob(f"*{STREAM_SUFFIX}{PART}")):
            sequence = int(part.name.split(".", 1)[0])
            self.sequence = max(self.sequence, sequence + 1)
            data = part.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if not complete:
                part.unlink()
                continue
            if len(complete) != len(data):
                with open(part, "r+b") as handle:
                    handle.truncate(len(complete))
                    os.fsync(handle.fileno())
            landed.append(self._land(part, sequence))
        existing = [
            int(p.name[len(self.consumer) + 1 :].split(".", 1)[0])
            for p in self.landing.glob(f"{self.consumer}-*{STREAM_SUFFIX}")
        ]
        self.sequence = max([self.sequence, *(s + 1 for s in existing)])
        self._save_sequence()
        return landed

    def append(self, lines: list[bytes]) -> None:
        """Write and fsync `lines` (envelopes): after this returns they are durable, and the
        caller may acknowledge them. Raises `LandingNotWritable` and keeps nothing half-said
        as durable (the caller must not acknowledge)."""
        if not lines:
            return
        try:
            if self._handle is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._handle = open(self._part(self.sequence), "ab")  # noqa: SIM115
                self.opened_at = time.monotonic()
            handle = self._handle
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as error:
            self._drop_handle()
            raise LandingNotWritable(error.errno, f"{self.folder}: {error.strerror}") from None
        self.messages += len(lines)

    def due(self, now: float | None = None) -> bool:
        """Whether the open journal should become a batch now (full, or old enough)."""
        if not self.messages:
            return False
        age = (time.monotonic() if now is None else now) - self.opened_at
        return self.messages >= self.max_messages or age >= self.max_age_s

    def rotate(self) -> Path | None:
        """Close the open journal and land it as a batch (atomic rename); None if empty."""
        if not self.messages:
            return None
        self._drop_handle()
        batch = self._land(self._part(self.sequence), self.sequence)
        self.sequence += 1
        self.messages = 0
        self._save_sequence()
        return batch

    def _save_sequence(self) -> None:
        """Remember the next batch number (a name is only a label, the content hash is the
        identity: losing this file costs unique names, never data)."""
        tmp = self.folder / f".{NEXT_SEQUENCE}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(str(self.sequence))
            tmp.replace(self.folder / NEXT_SEQUENCE)

    def _land(self, part: Path, sequence: int) -> Path:
        target = self.batch_path(sequence)
        try:
            os.replace(part, target)
            directory = os.open(self.landing, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as error:
            raise LandingNotWritable(error.errno, f"{self.landing}: {error.strerror}") from None
        return target

    def _drop_handle(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def close(self) -> Path | None:
        """Land what is durable (the clean end of a consumer)."""
        return self.rotate()
