"""5b. Hostile landing files: random bytes, a truncated gzip, the wrong encodings, a 100 MB
line, a 1M-column CSV header, JSON nested 10,000 deep and a file renamed while the sensor
reads it. Each ends as dead letters with a reason (or, renamed, is ingested once under its new
name); the landing sensor keeps ticking; every data line is an event or a dead letter."""

import gzip
import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from sentinel_assets.telemetry import lake, landing
from sentinel_assets_tests.landing_daemon import Landing
from sentinel_assets_tests.reliability.table import ScenarioRow, sized
from sentinel_assets_tests.telemetry_helpers import CSV_HEADER, csv_line, json_line, v2

GOOD_LINES = sized(40, 2_000)  # good records around the hostile ones in the files that have any
HUGE_LINE_BYTES = 100 * 2**20
WIDE_COLUMNS = 1_000_000
DEEP = 10_000


def good_records(tag: int, n: int = GOOD_LINES) -> list[dict]:
    """`n` valid V2 records, unique across files by (device, time)."""
    return [
        v2(device_id=f"SN-USE-{tag:04d}{i:04d}", ts=f"2026-10-31T{i % 24:02d}:{i % 60:02d}:00Z")
        for i in range(n)
    ]


def jsonl(records: list[dict], *hostile: str) -> bytes:
    return ("\n".join([*map(json_line, records), *hostile]) + "\n").encode()


def random_bytes(_: int) -> tuple[bytes, list[dict]]:
    return random.Random(15).randbytes(2**20), []


def random_text_bytes(_: int) -> tuple[bytes, list[dict]]:
    """Random bytes without a NUL: read as text, line by line."""
    noise = bytes(b or 1 for b in random.Random(16).randbytes(2**20))
    return noise, []


def truncated_gzip(tag: int) -> tuple[bytes, list[dict]]:
    whole = gzip.compress(jsonl(good_records(tag)))
    return whole[: len(whole) * 2 // 3], []  # a file that fails keeps nothing


def latin1_csv(tag: int) -> tuple[bytes, list[dict]]:
    records = good_records(tag)
    lines = [",".join(CSV_HEADER).encode(), *(csv_line(r).encode() for r in records)]
    lines.append(csv_line(v2(device_id="SN-USE-99990001", site="Montréal")).encode("latin-1"))
    return b"\n".join(lines) + b"\n", records


def utf16_jsonl(tag: int) -> tuple[bytes, list[dict]]:
    return jsonl(good_records(tag)).decode().encode("utf-16"), []


def huge_line(tag: int) -> tuple[bytes, list[dict]]:
    """One 100 MB line between good ones: it alone is a dead letter."""
    records = good_records(tag)
    line = b'{"device_id": "' + b"x" * HUGE_LINE_BYTES + b'"}'
    return jsonl(records[:5]) + line + b"\n" + jsonl(records[5:]), records


def wide_csv_header(tag: int) -> tuple[bytes, list[dict]]:
    header = ",".join(f"column_{i}" for i in range(WIDE_COLUMNS))
    return (header + "\n" + csv_line(good_records(tag, 1)[0]) + "\n").encode(), []


def deep_json(tag: int) -> tuple[bytes, list[dict]]:
    records = good_records(tag)
    deep_object = '{"a":' * DEEP + "1" + "}" * DEEP
    deep_array = "[" * DEEP + "]" * DEEP
    return jsonl(records, deep_object, deep_array), records


HOSTILE: dict[str, Callable[[int], tuple[bytes, list[dict]]]] = {
    "noise.jsonl": random_bytes,
    "noise-text.csv": random_text_bytes,
    "cut.jsonl.gz": truncated_gzip,
    "latin1.csv": latin1_csv,
    "utf16.jsonl": utf16_jsonl,
    "huge-line.jsonl": huge_line,
    "wide.csv": wide_csv_header,
    "deep.jsonl": deep_json,
}


# What each hostile file ends as (whole-file reasons have `line_number` 0).
EXPECTED_REASONS = {
    "noise.jsonl": {"file:binary"},
    "noise-text.csv": {"csv:bad_header"},  # its first "line" is not UTF-8
    "cut.jsonl.gz": {"gzip:corrupt"},
    "latin1.csv": {"encoding:invalid_utf8"},
    "utf16.jsonl": {"file:binary"},  # UTF-16 text is full of NUL bytes
    "huge-line.jsonl": {"line:too_long"},
    "wide.csv": {"csv:bad_header"},
    "deep.jsonl": {"schema:unknown_version", "json:not_an_object"},
}


def renaming_while_hashed(original: Callable[[Path], str], name: str, new_name: str):
    """`landing.content_hash` that renames `name` half-way through reading it (once)."""

    def content_hash(path: Path) -> str:
        if path.name != name:
            return original(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            data = handle.read()
            digest.update(data[: len(data) // 2])
            path.rename(path.with_name(new_name))
            digest.update(data[len(data) // 2 :])
        return digest.hexdigest()

    return content_hash


def data_lines_of(manifest: dict) -> int:
    return manifest["data_lines"] if not manifest["unreadable"] else 1


@pytest.mark.slow
@pytest.mark.reliability("5b. hostile landing files")
def test_hostile_landing_files_end_as_dead_letters_and_the_sensor_keeps_running(
    scenario: ScenarioRow, sentinel_home: Path, instance, monkeypatch: pytest.MonkeyPatch
):
    feed = Landing(sentinel_home, instance)
    feed.folder.mkdir(parents=True)
    expected: dict[str, list[dict]] = {}
    for tag, (name, build) in enumerate(HOSTILE.items(), start=1):
        content, good = build(tag)
        (feed.folder / name).write_bytes(content)
        expected[name] = good
    renamed = good_records(len(HOSTILE) + 1)
    (feed.folder / "moving.jsonl").write_bytes(jsonl(renamed))
    monkeypatch.setattr(
        landing,
        "content_hash",
        renaming_while_hashed(landing.content_hash, "moving.jsonl", "moved.jsonl"),
    )

    results = []
    for _ in range(3):  # the sensor keeps ticking; the renamed file is found under its new name
        requests = feed.tick()
        results += feed.run(requests)
        scenario.runs += len(requests)
    expected["moved.jsonl"] = renamed
    # ... and after all of that, a plain file is still ingested on the next tick.
    after = good_records(len(HOSTILE) + 2)
    (feed.folder / "after.jsonl").write_bytes(jsonl(after))
    results += feed.drain()
    scenario.runs += 1
    expected["after.jsonl"] = after

    failed = [r.dagster_run.tags.get("sentinel/landing_file") for r in results if not r.success]
    assert failed == []
    manifests = {m["source_file"]: m for m in lake.read_manifests(sentinel_home / "lake")}
    assert sorted(manifests) == sorted(expected), "every file is one batch, the renamed one too"
    letters = pl.concat(
        [pl.read_parquet(lake.dead_letters_file(sentinel_home / "lake", m["batch"]))
         for m in manifests.values()],
        how="vertical_relaxed",
    )  # fmt: skip
    events = lake.scan_events(sentinel_home / "lake").collect()
    problems: dict[str, str] = {}
    for name, manifest in manifests.items():
        good = {(r["device_id"], r["ts"].replace("Z", "+00:00")) for r in expected[name]}
        ingested = events.filter(pl.col("source_file") == name)
        found = {(d, t.isoformat()) for d, t in ingested.select("device_id", "ts").iter_rows()}
        mine = letters.filter(pl.col("source_file") == name)
        lost = len(good - found)
        duplicated = ingested.height - ingested["record_id"].n_unique()
        hostile = data_lines_of(manifest) > len(good)
        if not manifest["balanced"]:
            problems[name] = f"lines not accounted for: {manifest}"
        elif hostile and mine.is_empty():
            problems[name] = "no dead letter"
        elif mine.height != manifest["dead_letters"] or mine["reason"].null_count():
            problems[name] = f"dead letters missing or without a reason: {mine}"
        elif lost or found - good:
            problems[name] = f"{lost} good records lost, {len(found - good)} invented"
        if name != "after.jsonl":
            scenario.fault(name not in problems and not duplicated, lost, duplicated)
    reasons = {
        name: set(letters.filter(pl.col("source_file") == name)["reason"]) for name in HOSTILE
    }
    assert reasons == EXPECTED_REASONS
    assert problems == {}
    assert scenario.survived == len(HOSTILE) + 1
