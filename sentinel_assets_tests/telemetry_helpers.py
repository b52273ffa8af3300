"""Builders of landed files for the telemetry tests: V1 and V2 records as devices send them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import polars as pl

from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.ingest import IngestResult, ingest_file
from sentinel_assets.telemetry.simulate import V1_CSV_COLUMNS, V2_CSV_COLUMNS

CSV_HEADER = [*V1_CSV_COLUMNS, *(c for c in V2_CSV_COLUMNS if c not in V1_CSV_COLUMNS)]


def v2(**overrides: Any) -> dict[str, Any]:
    record = {
        "device_id": "SN-USE-00000001",
        "region": "us-east",
        "ts": "2026-10-31T03:15:00+00:00",
        "firmware_from": "4.1.0",
        "firmware_to": "4.2.0",
        "model": "gw-100",
        "update_status": "failed",
        "failure_kind": "download_timeout",
        "battery_pct": 55.5,
        "battery_voltage_v": 3.8,
        "temperature_c": 21.5,
        "signal_dbm": -80,
        "retry_count": 1,
        "boot_attempts": 0,
        "commit_state": None,
        "schema_version": 2,
        "site": "Springfield",
        "hardware_rev": "rev-a",
    }
    record.update(overrides)
    return record


def v1(**overrides: Any) -> dict[str, Any]:
    record = {
        "device_id": "SN-USE-00000002",
        "region": "us-east",
        "timestamp": 1793416500,
        "fw_version": "4.1.0",
        "target_fw": "4.2.0",
        "model": "gw-100",
        "status": "Pending",
        "battery": 0.5,
        "temp_f": 68,
        "signal": -90,
        "retries": 0,
    }
    record.update(overrides)
    return record


def json_line(record: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def csv_line(record: dict[str, Any]) -> str:
    return ",".join("" if record.get(c) is None else str(record[c]) for c in CSV_HEADER)


def write_lines(path: Path, lines: list[str | bytes], *, header: bool | None = None) -> Path:
    """A text file of these lines (CSV files get the union header first unless told not)."""
    if header is None:
        header = ".csv" in path.suffixes
    encoded = [line if isinstance(line, bytes) else line.encode() for line in lines]
    if header:
        encoded.insert(0, ",".join(CSV_HEADER).encode())
    data = b"\n".join(encoded) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def ingest(path: Path, lake_root: Path, **kwargs: Any) -> tuple[IngestResult, pl.DataFrame]:
    """Ingest one file; returns the result and every event of the lake."""
    result = ingest_file(path, lake_root, **kwargs)
    return result, lake.scan_events(lake_root).collect().sort("line_number")


def reasons_of(result: IngestResult) -> dict[int, list[str]]:
    return {row["line_number"]: row["reasons"] for row in result.dead_letters.iter_rows(named=True)}
