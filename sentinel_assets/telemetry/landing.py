"""The landing zone: where batch files arrive, and how a file's identity is decided.

* Identity is the content: a file's SHA-256. Its first 16 hex digits are its batch id (the
  `dead_letters` partition key). The same bytes dropped again are the same batch (a no-op);
  changed bytes under the same name are a new batch. Names and modification times are not
  identity.
* Convention for files still being written: writers create `<name>.tmp` (or `.part`, or a
  name starting with `.`) and rename it to its final name when complete (an atomic rename on
  the same file system, as `rsync`, `curl -o` wrappers and most gateways do). Such names are
  never read, so a file written slowly is never read half-way. Names starting with `_` are
  Sentinel's own folders (`_batches`, `_rejected`).
* A claimed file moves to `_batches/<batch id>/<name>` (immutable from then on); a file that
  cannot be read at all moves on to `_rejected/<batch id>/<name>` after its dead letter is
  written.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sentinel_assets.telemetry.wire import UnreadableFile, file_format

IN_PROGRESS_SUFFIXES: tuple[str, ...] = (".tmp", ".part")
BATCHES_DIR = "_batches"
REJECTED_DIR = "_rejected"
BATCH_ID_LENGTH = 16


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def batch_id(sha256: str) -> str:
    return sha256[:BATCH_ID_LENGTH]


def is_complete(path: Path) -> bool:
    """False for names a writer is still working on (see the module docstring)."""
    name = path.name
    return not (name.startswith((".", "_")) or name.lower().endswith(IN_PROGRESS_SUFFIXES))


def complete_files(folder: Path) -> list[Path]:
    """Complete files under `folder` (recursively, skipping `_`/`.` folders), sorted."""
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found += [Path(root) / name for name in files if is_complete(Path(name))]
    return sorted(found)


def batch_folder(landing: Path, batch: str) -> Path:
    return landing / BATCHES_DIR / batch


def claim(path: Path, landing: Path, sha256: str) -> Path:
    """Move a landed file into its batch folder (an atomic rename). A re-dropped copy of a
    batch already there is removed: its bytes are the batch's (same hash), nothing is lost."""
    batch = batch_id(sha256)
    existing = batch_file(landing, batch) or rejected_file(landing, batch)
    if existing is not None:
        path.unlink()
        return existing
    target = batch_folder(landing, batch) / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def batch_file(landing: Path, batch: str) -> Path | None:
    """The claimed file of a batch, if it is still in `_batches`."""
    folder = batch_folder(landing, batch)
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return files[0] if files else None


def rejected_file(landing: Path, batch: str) -> Path | None:
    folder = landing / REJECTED_DIR / batch
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return files[0] if files else None


def claimed_batches(landing: Path) -> list[str]:
    root = landing / BATCHES_DIR
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def move_aside(path: Path, landing: Path, batch: str) -> Path:
    """Put an unreadable file in `_rejected/<batch>/`, out of the way of ingestion."""
    target = landing / REJECTED_DIR / batch / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    if path.parent.name == batch and not any(path.parent.iterdir()):
        path.parent.rmdir()
    return target


@dataclass(frozen=True)
class LandingScan:
    """One look at the landing folder: batches claimed and not yet known (to ingest), files
    that were copies of known batches (removed), and files that could not be claimed."""

    new_batches: list[tuple[str, str]]  # (batch id, file name)
    redropped: list[str]
    errors: list[str]


def scan(landing: Path, known: set[str], limit: int = 200) -> LandingScan:
    """Claim every complete file; return the claimed batches not in `known` (batch ids already
    requested or ingested). Never raises for one bad file: it is reported in `errors` and
    looked at again next time. No clock is involved, so files arriving late or out of order
    are picked up like any other. At most `limit` files are hashed per call (a backlog is
    worked off over several sensor ticks, each well within the tick's time limit)."""
    redropped: list[str] = []
    errors: list[str] = []
    for path in complete_files(landing)[:limit]:
        try:
            digest = content_hash(path)
            if batch_id(digest) in known or (
                batch_file(landing, batch_id(digest)) or rejected_file(landing, batch_id(digest))
            ):
                redropped.append(path.name)
            claim(path, landing, digest)
        except OSError as error:
            errors.append(f"{path.name}: {error}")
    new = [
        (batch, file.name)
        for batch in claimed_batches(landing)
        if batch not in known and (file := batch_file(landing, batch)) is not None
    ]
    return LandingScan(new, redropped, errors)


class DeliveryError(ValueError):
    """A file cannot be placed in the landing zone; the message is one sentence for the user."""


@dataclass(frozen=True)
class Delivery:
    """Where a delivered file was placed, and the batch it will be ingested as."""

    path: Path
    batch: str
    sha256: str


def deliver(landing: Path, name: str, content: bytes) -> Delivery:
    """Place `content` in the landing zone as a gateway does: written to `<name>.part`,
    fsynced, then renamed, so the sensor never sees it half-written. A different file
    already waiting under the same name is never overwritten (the batch id is prefixed)."""
    plain = Path(name).name
    if not plain or plain != name or not is_complete(Path(plain)):
        raise DeliveryError(
            f"{name!r} is not a plain file name: a landed file needs a name without a folder, "
            f"not starting with '.' or '_' nor ending in {' or '.join(IN_PROGRESS_SUFFIXES)}."
        )
    try:
        file_format(Path(plain))
    except UnreadableFile as error:
        raise DeliveryError(f"{error.detail}.") from None
    sha256 = hashlib.sha256(content).hexdigest()
    batch = batch_id(sha256)
    target = landing / plain
    if target.exists() and content_hash(target) != sha256:
        target = landing / f"{batch}-{plain}"
    try:
        landing.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + IN_PROGRESS_SUFFIXES[-1])
        with open(partial, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except OSError as error:
        raise DeliveryError(
            f"Cannot write {target}: {error.strerror or error}; check that the landing folder "
            "is writable (SENTINEL_LANDING_DIR / SENTINEL_HOME)."
        ) from None
    return Delivery(target, batch, sha256)
