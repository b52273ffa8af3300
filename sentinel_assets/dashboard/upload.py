"""Upload: a telemetry file handed over in the dashboard goes where a gateway would put it,
and its ingestion result is read back once the landing sensor has run.

The dashboard never ingests itself: it places the file (`landing.deliver`, never
half-written) and the Dagster `landing_sensor` ingests it on its next tick, through the same
path as every other file. The result is the batch's manifest and dead letters in the lake,
found by the batch id, which is the file's content hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sentinel_assets.telemetry import lake as lake_io
from sentinel_assets.telemetry.dead_letters import empty_dead_letters
from sentinel_assets.telemetry.landing import Delivery, DeliveryError, deliver
from sentinel_assets.telemetry.wire import FORMATS

# What the file picker offers: every wire format, and the gzip of the text ones.
UPLOAD_TYPES: tuple[str, ...] = tuple(sorted({s.lstrip(".") for s in FORMATS} | {"gz"}))
DEAD_LETTER_ROWS_SHOWN = 200
SHOWN_COLUMNS = ("line_number", "reason", "reasons", "raw")

__all__ = ["UPLOAD_TYPES", "Delivery", "DeliveryError", "IngestionResult", "deliver", "result"]


@dataclass(frozen=True)
class IngestionResult:
    """One batch as the ingestion left it: its accounting and its dead letters."""

    batch: str
    source_file: str
    ingested_at: str
    accepted: int
    duplicates: int
    dead_letters: int
    unreadable: str | None
    reasons: pl.DataFrame  # reason, lines: dead letters per first broken rule, most first
    letters: pl.DataFrame  # line_number, reason, reasons, raw: the first dead letters


def result(lake: Path, batch: str) -> IngestionResult | None:
    """The ingestion result of `batch`, or None while the sensor has not ingested it yet."""
    manifest = lake_io.read_manifest(lake, batch)
    if manifest is None:
        return None
    file = lake_io.dead_letters_file(lake, batch)
    letters = (
        pl.read_parquet(file, columns=list(SHOWN_COLUMNS))
        if file.exists()
        else empty_dead_letters().select(SHOWN_COLUMNS)
    ).sort("line_number")
    reasons = (
        letters.group_by("reason")
        .agg(pl.len().alias("lines"))
        .sort(["lines", "reason"], descending=[True, False])
    )
    return IngestionResult(
        batch=batch,
        source_file=str(manifest["source_file"]),
        ingested_at=str(manifest["ingested_at"]),
        accepted=int(manifest["accepted"]),
        duplicates=int(manifest["duplicates"]),
        dead_letters=int(manifest["dead_letters"]),
        unreadable=manifest.get("unreadable") or None,
        reasons=reasons,
        letters=letters.head(DEAD_LETTER_ROWS_SHOWN),
    )
