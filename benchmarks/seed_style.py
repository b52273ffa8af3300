"""Deliberately row-wise seed-style baseline (pandas + SQLite) the pipeline is compared against.

Standalone on purpose, like the seed's scripts: it keeps its own constants and imports only
pandas, numpy and the standard library, because it runs in `.venv-seed`, without Sentinel.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

REGIONS: dict[str, str] = {
    "us-east": "USE",
    "us-west": "USW",
    "eu-central": "EUC",
    "eu-west": "EUW",
    "ap-south": "APS",
    "ap-northeast": "APN",
    "sa-east": "SAE",
    "af-south": "AFS",
}
MODELS: dict[str, tuple[str, str]] = {  # model -> (firmware_from, firmware_to)
    "gw-100": ("2.3.4", "2.4.0"),
    "gw-200": ("3.1.0", "3.2.1"),
    "sensor-s1": ("1.8.2", "1.9.0"),
    "sensor-s2": ("1.9.0", "2.0.0"),
    "cam-x3": ("4.0.7", "4.1.0"),
}
HARDWARE_REVS = ("rev-a", "rev-b", "rev-c")
STATUSES = ("success", "partial", "failed", "pending")
STATUS_WEIGHTS = (0.70, 0.08, 0.12, 0.10)
FAILURE_KINDS = ("download_timeout", "connection_lost", "out_of_storage", "verification_failed")
BOUNDS: dict[str, tuple[float, float]] = {
    "battery_pct": (0, 100),
    "battery_voltage_v": (2.5, 4.5),
    "signal_dbm": (-130, -20),
    "temperature_c": (-40, 85),
    "retry_count": (0, 100),
}
OUT_OF_RANGE: dict[str, tuple[float, ...]] = {
    "battery_pct": (250.0, -5.0),
    "battery_voltage_v": (9.9, 0.0),
    "signal_dbm": (40, -200),
    "temperature_c": (150.0, -60.0),
    "retry_count": (-1,),
}
COLUMNS = (  # noqa: SIM905 - a literal list would take 17 lines
    "record_id device_id region model hardware_rev firmware_from firmware_to update_status "
    "failure_kind battery_pct battery_voltage_v signal_dbm temperature_c retry_count last_seen_at"
).split()
REQUIRED = [c for c in COLUMNS if c not in ("record_id", "failure_kind")]
ALLOWED: dict[str, tuple[str, ...]] = {
    "region": tuple(REGIONS),
    "model": tuple(MODELS),
    "hardware_rev": HARDWARE_REVS,
    "update_status": STATUSES,
    "failure_kind": FAILURE_KINDS,
}
PATTERNS: dict[str, re.Pattern[str]] = {
    "device_id": re.compile(r"^SN-[A-Z]{3}-[0-9]{8}$"),
    "firmware_from": re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$"),
    "firmware_to": re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$"),
}
CLEAN_DTYPES = {
    "battery_pct": "float64",
    "battery_voltage_v": "float64",
    "signal_dbm": "int64",
    "temperature_c": "float64",
    "retry_count": "int64",
}
DECISION_COLUMNS = ["record_id", "device_id", "region", "model", "firmware_to", "update_status"]
DECISION_COLUMNS += ["failure_kind", "action", "reason"]
CAMPAIGN_NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
COMMIT_EVERY = 500
FAULT_RATE = 0.01  # per fault kind, six kinds, mutually exclusive per row

RANK_SQL = """
WITH region_stats AS (
    SELECT region, COUNT(*) AS devices,
           SUM(update_status = 'failed') AS failed, SUM(update_status = 'partial') AS partial
    FROM fleet GROUP BY region
), ranked_regions AS (
    SELECT *, CAST(failed + partial AS REAL) / devices AS unhealthy_rate,
           RANK() OVER (ORDER BY CAST(failed + partial AS REAL) / devices DESC) AS region_rank
    FROM region_stats
), clusters AS (
    SELECT region, model, firmware_to, COUNT(*) AS cluster_devices,
           SUM(update_status = 'failed') AS cluster_failures
    FROM fleet GROUP BY region, model, firmware_to
)
SELECT r.region, r.region_rank, r.devices, r.failed, r.partial, r.unhealthy_rate,
       c.model, c.firmware_to, c.cluster_devices, c.cluster_failures,
       RANK() OVER (PARTITION BY c.region ORDER BY c.cluster_failures DESC) AS cluster_rank
FROM ranked_regions AS r JOIN clusters AS c USING (region)
ORDER BY r.region_rank, r.region, cluster_rank, c.model
"""


def generate(n_devices: int, seed: int) -> pd.DataFrame:
    """One dict per device from `random.Random`, then a single `pd.DataFrame(rows)`."""
    rng = random.Random(seed)
    counters = dict.fromkeys(REGIONS, 0)
    rows: list[dict[str, Any]] = []
    for record_id in range(n_devices):
        region = rng.choice(tuple(REGIONS))
        counters[region] += 1
        model = rng.choice(tuple(MODELS))
        status = rng.choices(STATUSES, weights=STATUS_WEIGHTS)[0]
        pct = round(rng.uniform(0, 100), 1)
        voltage = 3.0 + 1.2 * pct / 100 + rng.gauss(0, 0.05)
        rows.append(
            {
                "record_id": record_id,
                "device_id": f"SN-{REGIONS[region]}-{counters[region]:08d}",
                "region": region,
                "model": model,
                "hardware_rev": rng.choice(HARDWARE_REVS),
                "firmware_from": MODELS[model][0],
                "firmware_to": MODELS[model][1],
                "update_status": status,
                "failure_kind": rng.choice(FAILURE_KINDS) if status == "failed" else None,
                "battery_pct": pct,
                "battery_voltage_v": round(min(4.5, max(2.5, voltage)), 3),
                "signal_dbm": rng.randint(-130, -20),
                "temperature_c": round(rng.uniform(-40, 85), 1),
                "retry_count": rng.randint(0, 5),
                "last_seen_at": CAMPAIGN_NOW - timedelta(seconds=rng.randint(0, 72 * 3600)),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _malformed_id(device_id: str, rng: random.Random) -> str:
    variants = (device_id.lower(), device_id.replace("-", "_"), device_id[:-3], f" {device_id}")
    return rng.choice(variants)


def corrupt(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Walk the frame with `iterrows`, injecting one fault kind into ~1 % of rows each."""
    rng = random.Random(seed + 1)
    numeric = tuple(BOUNDS)
    rows: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    for _, series in df.iterrows():
        row = series.to_dict()
        draw = rng.random()
        if draw < FAULT_RATE:
            row[rng.choice(REQUIRED)] = None
        elif draw < 2 * FAULT_RATE:
            row[rng.choice(numeric)] = rng.choice(("N/A", "87%", "", "--", "1,5"))
        elif draw < 3 * FAULT_RATE:
            column = rng.choice(numeric)
            row[column] = rng.choice(OUT_OF_RANGE[column])
        elif draw < 4 * FAULT_RATE:
            row["update_status"] = rng.choice(("updating", "SUCCESS", "unknown", "ok"))
        elif draw < 5 * FAULT_RATE:
            duplicates.append(dict(row, record_id=len(df) + len(duplicates)))
        elif draw < 6 * FAULT_RATE:
            row["device_id"] = _malformed_id(row["device_id"], rng)
        rows.append(row)
    return pd.DataFrame(rows + duplicates, columns=COLUMNS)


def _row_reasons(first_seen: dict[tuple[str, Any], Any]) -> Callable[[pd.Series], list[str]]:
    def reasons(row: pd.Series) -> list[str]:
        found: list[str] = []
        for column in COLUMNS:
            value = row[column]
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                if column in REQUIRED:
                    found.append(f"{column}:missing")
                continue
            if column in BOUNDS:
                if isinstance(value, str | bool):
                    found.append(f"{column}:not_numeric")
                elif not (math.isfinite(value) and BOUNDS[column][0] <= value <= BOUNDS[column][1]):
                    found.append(f"{column}:out_of_range")
            elif column in ALLOWED and value not in ALLOWED[column]:
                found.append(f"{column}:not_allowed")
            elif column in PATTERNS and not PATTERNS[column].match(str(value)):
                found.append(f"{column}:malformed")
            unique = column in ("record_id", "device_id")
            if unique and first_seen.setdefault((column, value), row.name) != row.name:
                found.append(f"{column}:duplicate")
        status = row["update_status"]
        has_kind = row["failure_kind"] is not None and not pd.isna(row["failure_kind"])
        if isinstance(status, str) and (status == "failed") != has_kind:
            found.append("failure_kind:set_iff_failed")
        return found

    return reasons


def sanitize(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Row-wise rule check via `apply(axis=1)`; rows with any reason go to quarantine."""
    reasons = df.apply(_row_reasons({}), axis=1)
    bad = reasons.map(bool)
    sanitized = df[~bad].astype(CLEAN_DTYPES).reset_index(drop=True)
    quarantine = df[bad].copy()
    quarantine["reasons"] = reasons[bad].map("; ".join)
    return sanitized, quarantine.reset_index(drop=True)


def _decide_row(row: pd.Series) -> tuple[str, str] | None:
    status = row["update_status"]
    if status == "partial":
        pct, volts = row["battery_pct"], row["battery_voltage_v"]
        if volts < 3.6 or pct < 30:
            return "defer", f"partial install on low battery ({pct:.0f} %, {volts:.2f} V)"
        return "rollback", f"partial install with healthy battery ({pct:.0f} %, {volts:.2f} V)"
    if status == "failed":
        retries, signal = row["retry_count"], row["signal_dbm"]
        if retries < 3 and signal >= -110:
            return "retry", f"{row['failure_kind']}: {retries} retries, signal {signal} dBm"
        return "manual_triage", f"{row['failure_kind']}: {retries} retries, signal {signal} dBm"
    return None


def decide(sanitized: pd.DataFrame) -> pd.DataFrame:
    """Row-wise decision via `apply(axis=1)`; success and pending rows yield no decision."""
    outcomes = sanitized.apply(_decide_row, axis=1)
    rows: list[dict[str, Any]] = []
    for index, outcome in outcomes.items():
        if outcome is not None:
            row = sanitized.loc[index]
            rows.append(
                {c: row[c] for c in DECISION_COLUMNS[:-2]}
                | dict(zip(("action", "reason"), outcome, strict=True))
            )
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def _sql_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def _insert(
    conn: sqlite3.Connection, table: str, columns: list[str], rows: Iterable[tuple]
) -> None:
    conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
    sql = f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})"
    batch: list[list[Any]] = []
    for row in rows:
        batch.append([_sql_value(value) for value in row])
        if len(batch) == COMMIT_EVERY:
            conn.executemany(sql, batch)
            conn.commit()
            batch = []
    if batch:
        conn.executemany(sql, batch)
    conn.commit()


def store(
    db: pathlib.Path, fleet: pd.DataFrame, quarantine: pd.DataFrame, decisions: pd.DataFrame
) -> None:
    """Insert the three frames into SQLite, committing every 500 rows."""
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        for table, frame in (("fleet", fleet), ("decisions", decisions)):
            _insert(conn, table, list(frame.columns), frame.itertuples(index=False, name=None))
        raw = (
            [None if (v := _sql_value(x)) is None else str(v) for x in row]
            for row in quarantine.itertuples(index=False, name=None)
        )
        _insert(conn, "quarantine", list(quarantine.columns), raw)
    conn.close()


def rank(db: pathlib.Path) -> list[tuple[Any, ...]]:
    """Regions by unhealthy rate, and (model, firmware_to) clusters by failures within each."""
    with sqlite3.connect(db) as conn:
        result = conn.execute(RANK_SQL).fetchall()
    conn.close()
    return result


def run_seed_style(n_devices: int, workdir: pathlib.Path, seed: int = 7) -> dict[str, float]:
    """Run every stage once; wall seconds per stage plus row counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = last = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        timings[stage], last = now - last, now

    raw = generate(n_devices, seed)
    lap("generate")
    corrupted = corrupt(raw, seed)
    lap("corrupt")
    sanitized, quarantine = sanitize(corrupted)
    lap("sanitize")
    decisions = decide(sanitized)
    lap("decide")
    db = workdir / "seed_style.sqlite"
    store(db, sanitized, quarantine, decisions)
    lap("store")
    ranked = rank(db)
    lap("rank")
    if not ranked:
        raise RuntimeError("rank query returned no rows")
    timings["total"] = time.perf_counter() - start
    timings["rows_sanitized"] = float(len(sanitized))
    timings["rows_quarantined"] = float(len(quarantine))
    timings["decisions"] = float(len(decisions))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="seed-style-"))
    print(json.dumps(run_seed_style(args.devices, workdir, args.seed), indent=2))


if __name__ == "__main__":
    main()
