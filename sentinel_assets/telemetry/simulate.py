"""The device simulator: realistic landing files, so the demo runs the same path as real data.

For each region it takes the generator's fleet as it stands at `as_of` (`generate_fleet`) and
lets every device report `readings_per_day` times a day over `days` days, its latest reading
at its `last_seen_at`. Readings before its update attempt say `pending`; battery, temperature
and signal wander around the final values (clipped to the contract bounds). A share of the
devices ran a legacy V1 agent until an upgrade somewhere in the window (their older readings
are V1, converted back: epoch seconds, battery fraction, °F, capitalised status), so files mix
V1 and V2 records. One file per region and day, CSV or JSON Lines by turns, some gzipped,
written as `<name>.tmp` and renamed when complete (the landing convention). A share of
lines is resent (duplicates) and a share is malformed (truncated lines, invalid UTF-8,
out-of-range battery, unparsable timestamps).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from sentinel_assets.contracts import BOUNDS, REGIONS
from sentinel_assets.contracts import region as region_row
from sentinel_assets.generate import generate_fleet

GARBAGE_TOKEN = "\u2063GARBAGE\u2063"
GARBAGE_BYTES = b"\xff\xfe\xc3(\xa0\xa1 not utf-8"
V1_CSV_COLUMNS = (
    "device_id", "region", "timestamp", "fw_version", "target_fw", "model", "status",
    "battery", "temp_f", "signal", "retries",
)  # fmt: skip
V2_CSV_COLUMNS = (
    "device_id", "region", "ts", "firmware_from", "firmware_to", "model", "update_status",
    "failure_kind", "battery_pct", "battery_voltage_v", "temperature_c", "signal_dbm",
    "retry_count", "boot_attempts", "commit_state", "schema_version", "site", "hardware_rev",
)  # fmt: skip


@dataclass(frozen=True)
class SimulationPlan:
    """What the simulator writes; every share is within [0, 1]."""

    days: int = 2
    devices_per_region: int = 200
    readings_per_day: int = 4
    seed: int = 7
    as_of: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    regions: tuple[str, ...] = REGIONS
    v1_device_share: float = 0.4  # devices whose older readings come from a V1 agent
    malformed_share: float = 0.02
    resend_share: float = 0.01
    gzip_every: int = 3  # every third file is gzipped (0: none)

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"--days must be at least 1, got {self.days}")
        if self.devices_per_region < 0:
            raise ValueError(f"--devices-per-region must be >= 0, got {self.devices_per_region}")
        if self.readings_per_day < 1:
            raise ValueError(f"readings per day must be at least 1, got {self.readings_per_day}")
        for name in ("v1_device_share", "malformed_share", "resend_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must be within [0, 1], got {value}")
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must carry a time zone (UTC)")


def _clip(column: str, values: pl.Expr) -> pl.Expr:
    return values.clip(BOUNDS[column].low, BOUNDS[column].high)


def readings(region: str, plan: SimulationPlan) -> pl.DataFrame:
    """Every reading of the region's devices over the window, V2-shaped, with `agent` 1 or 2."""
    fleet = generate_fleet(region, plan.devices_per_region, seed=plan.seed, as_of=plan.as_of)
    n = fleet.height
    per_device = plan.days * plan.readings_per_day
    rng = np.random.default_rng([plan.seed, region_row(region).number, 11])
    step_us = int(86_400e6 / plan.readings_per_day)
    attempt = rng.integers(1, per_device + 1, n)  # readings k < attempt show the final status
    upgraded_at = np.where(
        rng.random(n) < plan.v1_device_share, rng.integers(1, per_device + 1, n), per_device + 1
    )
    k = np.tile(np.arange(per_device), n)
    device = np.repeat(np.arange(n), per_device)
    jitter_us = rng.integers(-step_us // 4, step_us // 4 + 1, n * per_device) * (k > 0)
    frame = pl.DataFrame(
        {
            "_device": device,
            "_k": k,
            "_jitter": jitter_us,
            "_noise": rng.normal(0, 1, (3, n * per_device)).T,
        }
    ).with_columns(
        pl.col("_noise").arr.get(0).alias("_n0"),
        pl.col("_noise").arr.get(1).alias("_n1"),
        pl.col("_noise").arr.get(2).alias("_n2"),
        pl.Series("_attempt", attempt).gather(pl.Series(device)).alias("_attempt"),
        pl.Series("_upgraded", upgraded_at).gather(pl.Series(device)).alias("_upgraded"),
    )
    frame = frame.join(
        fleet.with_row_index("_device").with_columns(pl.col("_device").cast(pl.Int64)),
        on="_device",
    )
    window_start = plan.as_of - timedelta(days=plan.days)
    pending = pl.col("_k") >= pl.col("_attempt")
    frame = frame.with_columns(
        (
            pl.col("last_seen_at")
            - pl.duration(microseconds=pl.col("_k") * step_us + pl.col("_jitter"))
        ).alias("ts"),
        pl.when(pending)
        .then(pl.lit("pending"))
        .otherwise(pl.col("update_status"))
        .alias("update_status"),
        pl.when(pending).then(None).otherwise(pl.col("failure_kind")).alias("failure_kind"),
        pl.when(pending).then(None).otherwise(pl.col("commit_state")).alias("commit_state"),
        pl.when(pending).then(0).otherwise(pl.col("boot_attempts")).alias("boot_attempts"),
        pl.when(pending).then(0).otherwise(pl.col("retry_count")).alias("retry_count"),
        _clip("battery_pct", pl.col("battery_pct") + pl.col("_k") * 0.4 + pl.col("_n0")).round(1),
        _clip("temperature_c", pl.col("temperature_c") + 2 * pl.col("_n1")).round(1),
        _clip("signal_dbm", pl.col("signal_dbm") + (3 * pl.col("_n2")).round().cast(pl.Int64)),
        pl.when(pl.col("_k") >= pl.col("_upgraded")).then(1).otherwise(2).alias("agent"),
    )
    frame = frame.with_columns(
        _clip(
            "battery_voltage_v",
            3.3 + 0.9 * pl.col("battery_pct") / 100 + 0.02 * pl.col("_n1"),
        ).round(3)
    )
    frame = frame.filter(pl.col("ts") >= window_start, pl.col("ts") <= plan.as_of)
    return frame.select(
        "device_id", "region", "ts", "model", "site", "hardware_rev", "firmware_from",
        "firmware_to", "update_status", "failure_kind", "commit_state", "battery_pct",
        "battery_voltage_v", "temperature_c", "signal_dbm", "retry_count", "boot_attempts",
        "agent",
    ).sort("ts", "device_id")  # fmt: skip


def _v1_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """V2 readings as a legacy agent sends them (the inverse of `schema`'s upcast)."""
    epoch_us = pl.col("ts").dt.epoch("us")
    return frame.select(
        "device_id",
        "region",
        # Integer seconds, or with a decimal part when the reading was not on a full second.
        pl.when(epoch_us % 1_000_000 == 0)
        .then((epoch_us // 1_000_000).cast(pl.String))
        .otherwise((epoch_us / 1e6).round(3).cast(pl.String))
        .alias("timestamp"),
        pl.col("firmware_from").alias("fw_version"),
        pl.col("firmware_to").alias("target_fw"),
        "model",
        pl.col("update_status").str.to_titlecase().alias("status"),
        (pl.col("battery_pct") / 100).round(4).cast(pl.String).alias("battery"),
        (pl.col("temperature_c") * 9 / 5 + 32).round(2).cast(pl.String).alias("temp_f"),
        pl.col("signal_dbm").cast(pl.String).alias("signal"),
        pl.col("retry_count").cast(pl.String).alias("retries"),
    )


def _v2_fields(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        "device_id",
        "region",
        pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00").alias("ts"),
        *[
            pl.col(c).cast(pl.String)
            for c in V2_CSV_COLUMNS
            if c not in ("device_id", "region", "ts", "schema_version")
        ],
        pl.lit("2").alias("schema_version"),
    )


def _corrupt_values(frame: pl.DataFrame, rng: np.random.Generator, share: float) -> pl.DataFrame:
    """Break a reading's value in a way only the schema rules notice (half of `share`)."""
    kind = rng.random(frame.height)
    hit_battery = pl.Series(kind < share / 4)
    hit_ts = pl.Series((kind >= share / 4) & (kind < share / 2))
    return frame.with_columns(
        pl.when(hit_battery).then(pl.col("battery_pct") + 150).otherwise(pl.col("battery_pct")),
        hit_ts.alias("_bad_ts"),  # its time is written as text no parser accepts
    )


def _lines(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Each reading as one line of text, V1 or V2 by its agent, with its `ts` to order by."""
    parts = []
    for agent, fields in ((1, _v1_fields), (2, _v2_fields)):
        rows = frame.filter(pl.col("agent") == agent)
        if rows.height == 0:
            continue
        text = fields(rows)
        bad_ts = rows["_bad_ts"]
        time_col = "timestamp" if agent == 1 else "ts"
        text = text.with_columns(
            pl.when(bad_ts).then(pl.lit("soon")).otherwise(pl.col(time_col)).alias(time_col)
        )
        if kind == "jsonl":
            line = pl.struct(pl.all()).struct.json_encode()
            lines = text.select(line.alias("line"))
        else:
            columns = [*V1_CSV_COLUMNS, *(c for c in V2_CSV_COLUMNS if c not in V1_CSV_COLUMNS)]
            lines = text.select(
                pl.concat_str(
                    [
                        (pl.col(c) if c in text.columns else pl.lit(None, pl.String)).fill_null("")
                        for c in columns
                    ],
                    separator=",",
                ).alias("line")
            )
        keep = [rows[c] for c in ("_topic",) if c in rows.columns]  # messages' topics
        parts.append(lines.with_columns(rows["ts"].alias("_order"), *keep))
    if not parts:
        return pl.DataFrame(schema={"line": pl.String, "_order": pl.Datetime("us", "UTC")})
    return pl.concat(parts).sort("_order", maintain_order=True)


def _break_lines(lines: pl.Series, rng: np.random.Generator, share: float) -> pl.Series:
    """Structural damage to half of `share` of the lines: truncation or invalid UTF-8."""
    kind = rng.random(lines.len())
    truncate = pl.Series(kind < share / 4)
    garbage = pl.Series((kind >= share / 4) & (kind < share / 2))
    return (
        pl.DataFrame({"line": lines, "t": truncate, "g": garbage})
        .select(
            pl.when("g")
            .then(pl.lit(GARBAGE_TOKEN))
            .when("t")
            .then(pl.col("line").str.slice(0, pl.col("line").str.len_chars() // 2))
            .otherwise("line")
        )
        .to_series()
    )


def _with_garbage_bytes(data: bytes) -> bytes:
    """Polars strings are UTF-8: broken lines carry a token until they are bytes."""
    return data.replace(GARBAGE_TOKEN.encode("utf-8"), GARBAGE_BYTES)


def write_landing_file(path: Path, data: bytes) -> Path:
    """Write `<path>.tmp`, then rename it: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = gzip.compress(data, mtime=0) if path.suffix == ".gz" else data
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return path


def simulate(landing: Path, plan: SimulationPlan) -> list[Path]:
    """Write the plan's landing files (one per region and day); returns their paths."""
    written: list[Path] = []
    file_index = 0
    for region in plan.regions:
        rng = np.random.default_rng([plan.seed, region_row(region).number, 23])
        frame = _corrupt_values(readings(region, plan), rng, plan.malformed_share)
        resent = frame.filter(pl.Series(rng.random(frame.height) < plan.resend_share))
        frame = pl.concat([frame, resent]).sort("ts", maintain_order=True)
        for day, rows in _by_day(frame):
            kind = "jsonl" if file_index % 2 else "csv"
            lines = _lines(rows, kind)["line"]
            lines = _break_lines(lines, rng, plan.malformed_share)
            if kind == "csv":
                header = ",".join(
                    [*V1_CSV_COLUMNS, *(c for c in V2_CSV_COLUMNS if c not in V1_CSV_COLUMNS)]
                )
                lines = pl.concat([pl.Series([header]), lines])
            data = ("\n".join(lines.to_list()) + "\n").encode("utf-8")
            data = _with_garbage_bytes(data)
            gz = plan.gzip_every and file_index % plan.gzip_every == plan.gzip_every - 1
            name = f"{region}_{day}.{kind}" + (".gz" if gz else "")
            written.append(write_landing_file(landing / name, data))
            file_index += 1
    return written


def _by_day(frame: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    days = frame.with_columns(pl.col("ts").dt.date().cast(pl.String).alias("_day"))
    return [
        (str(key[0]), part.drop("_day").sort("ts", maintain_order=True))
        for key, part in sorted(days.partition_by("_day", as_dict=True).items())
    ]


def messages(plan: SimulationPlan) -> pl.DataFrame:
    """The plan's readings as devices publish them over MQTT: one JSON payload per reading
    (the same V1/V2 agents, resends and malformed share as the files), with its topic
    `fleet/<region>/<device_id>/telemetry`, in time order per region."""
    frames = []
    for region in plan.regions:
        rng = np.random.default_rng([plan.seed, region_row(region).number, 29])
        frame = _corrupt_values(readings(region, plan), rng, plan.malformed_share)
        resent = frame.filter(pl.Series(rng.random(frame.height) < plan.resend_share))
        frame = pl.concat([frame, resent]).sort("ts", maintain_order=True)
        frame = frame.with_columns(
            pl.format("fleet/{}/{}/telemetry", pl.lit(region), pl.col("device_id")).alias("_topic")
        )
        lines = _lines(frame, "jsonl")
        payload = _break_lines(lines["line"], rng, plan.malformed_share)
        frames.append(pl.DataFrame({"topic": lines["_topic"], "payload": payload}))
    if not frames:
        return pl.DataFrame(schema={"topic": pl.String, "payload": pl.String})
    return pl.concat(frames)


def published(plan: SimulationPlan) -> list[tuple[str, bytes]]:
    """`messages(plan)` as (topic, payload bytes), the way a device's MQTT client sends them."""
    frame = messages(plan)
    return [
        (topic, _with_garbage_bytes(payload.encode("utf-8")))
        for topic, payload in zip(frame["topic"], frame["payload"], strict=True)
    ]
