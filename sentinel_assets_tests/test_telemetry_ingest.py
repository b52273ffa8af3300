"""Ingestion: duplicates, identity, accounting (property-tested), the lake and the fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_assets.contracts import FLEET_SCHEMA, TELEMETRY_EVENT_SCHEMA
from sentinel_assets.telemetry import lake, landing, record_id
from sentinel_assets.telemetry.fleet import fleet_from_events
from sentinel_assets.telemetry.ingest import ingest_file, rebuild_partition
from sentinel_assets.telemetry.simulate import SimulationPlan, simulate
from sentinel_assets.validation import check_contract
from sentinel_assets_tests.telemetry_helpers import (
    csv_line,
    ingest,
    json_line,
    reasons_of,
    v1,
    v2,
    write_lines,
)

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_resent_event_is_kept_once_and_counted_as_a_duplicate(tmp_path):
    line = json_line(v2())
    result, events = ingest(
        write_lines(tmp_path / "a.jsonl", [line, line, line]), tmp_path / "lake"
    )
    assert events.height == 1 and events["line_number"].to_list() == [1]
    assert (result.accounting.accepted, result.accounting.duplicates) == (1, 2)


def test_a_v1_record_and_its_v2_resend_are_one_event(tmp_path):
    record = v1(timestamp=1793416500, battery=0.5, temp_f=68, status="Pending")
    same = v2(
        device_id=record["device_id"], ts="2026-10-31T03:15:00Z", battery_pct=50.0,
        temperature_c=20.0, update_status="pending", failure_kind=None, signal_dbm=-90,
        retry_count=0, battery_voltage_v=None, boot_attempts=None, site=None, hardware_rev=None,
    )  # fmt: skip
    path = write_lines(tmp_path / "b.jsonl", [json_line(record), json_line(same)])
    result, events = ingest(path, tmp_path / "lake")
    assert (events.height, result.accounting.duplicates) == (1, 1)


def test_two_readings_at_one_timestamp_with_different_payloads_are_both_kept(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [json_line(v2()), json_line(v2(battery_pct=54.0))])
    result, events = ingest(path, tmp_path / "lake")
    assert events.height == 2 and events["record_id"].n_unique() == 2
    assert result.accounting.duplicates == 0


def test_an_event_resent_in_a_later_file_is_a_duplicate_of_that_file(tmp_path):
    root = tmp_path / "lake"
    ingest(write_lines(tmp_path / "first.jsonl", [json_line(v2())]), root)
    later = write_lines(tmp_path / "later.jsonl", [json_line(v2()), json_line(v2(retry_count=2))])
    result, events = ingest(later, root)
    assert (result.accounting.accepted, result.accounting.duplicates) == (1, 1)
    assert sorted(events["source_file"].to_list()) == ["first.jsonl", "later.jsonl"]


def test_record_ids_are_stable_across_re_ingestion_and_machines(tmp_path):
    path = write_lines(tmp_path / "d.csv", [csv_line(v2()), csv_line(v1())])
    _, first = ingest(path, tmp_path / "one")
    _, second = ingest(path, tmp_path / "two")
    assert first["record_id"].to_list() == second["record_id"].to_list()
    assert (first["record_id"] >= 0).all()


def _reference_id(row: dict) -> int:
    """The documented scheme, one row in plain Python (the xxHash project's own binding)."""
    import struct

    import xxhash

    mask = (1 << 64) - 1
    text = "\x1f".join(
        "\u2400" if row[name] is None else str(row[name]) for name in record_id.TEXT_COLUMNS
    )
    hashed = xxhash.xxh3_64_intdigest(text.encode())
    for name in record_id.NUMERIC_COLUMNS:
        value = row[name]
        if value is None:
            bits = record_id.NULL_BITS
        elif name == "ts":
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            bits = ((value - epoch) // timedelta(microseconds=1)) & mask
        elif isinstance(value, float):
            bits = struct.unpack("<Q", struct.pack("<d", value + 0.0))[0]
        else:
            bits = value & mask
        z = ((hashed ^ bits) + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        hashed = z ^ (z >> 31)
    return hashed & ((1 << 63) - 1)


def test_an_event_id_is_the_documented_hash_of_its_payload(tmp_path):
    lines = [
        json_line(v2(site=None)),
        json_line(v1(signal=-80, retries=2)),  # V2 fields a V1 agent does not send: NULL
        json_line(v2(temperature_c=-0.0, ts="1969-12-31T23:59:59.5Z")),  # before the epoch
    ]
    _, events = ingest(write_lines(tmp_path / "x.jsonl", lines), tmp_path)
    assert events.height == 3
    for row in events.to_dicts():
        assert row["record_id"] == _reference_id(row)


def test_minus_zero_and_zero_are_the_same_reading(tmp_path):
    lines = [json_line(v2(temperature_c=0.0)), json_line(v2(temperature_c=-0.0))]
    result, events = ingest(write_lines(tmp_path / "z.jsonl", lines), tmp_path)
    assert (events.height, result.accounting.duplicates) == (1, 1)


def _as_written_before_xxh3(root: Path) -> None:
    """Rewrite a lake's ids as the MD5 scheme did (ISO timestamps) and forget its scheme."""
    from sentinel_assets.telemetry.dead_letters import stable_ids
    from sentinel_assets.telemetry.schema import EVENT_VALUE_COLUMNS

    old_payload = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("\u2400") for c in EVENT_VALUE_COLUMNS],
        separator="\x1f",
    )
    for part in lake.event_files(root):
        frame = pl.read_parquet(part)
        old_ids = stable_ids(frame.select(old_payload).to_series())
        frame.with_columns(old_ids).write_parquet(part)
    (root / lake.LAKE_META).unlink()


def test_a_lake_with_md5_ids_is_migrated_before_the_next_ingestion_and_dedupes_across_it(
    tmp_path,
):
    root = tmp_path / "lake"
    _, current = ingest(write_lines(tmp_path / "a.csv", [csv_line(v2()), csv_line(v1())]), root)
    _as_written_before_xxh3(root)
    assert lake.scan_events(root).collect()["record_id"].sort().to_list() != sorted(
        current["record_id"].to_list()
    )
    assert lake.record_id_scheme(root) is None
    # The next file resends one event of the first: a duplicate only if the ids were migrated.
    resend = write_lines(tmp_path / "b.jsonl", [json_line(v2()), json_line(v2(retry_count=3))])
    result, events = ingest(resend, root)
    assert (result.accounting.accepted, result.accounting.duplicates) == (1, 1)
    first_batch = events.filter(pl.col("source_file") == "a.csv")
    assert sorted(first_batch["record_id"].to_list()) == sorted(current["record_id"].to_list())
    assert lake.record_id_scheme(root) == record_id.SCHEME
    assert lake.ensure_record_ids(root) == 0  # current now: nothing rewritten again


def test_migrating_ids_twice_or_on_a_new_lake_changes_nothing(tmp_path):
    root = tmp_path / "lake"
    assert lake.ensure_record_ids(root) == 0 and lake.record_id_scheme(root) == record_id.SCHEME
    _, events = ingest(write_lines(tmp_path / "a.jsonl", [json_line(v2())]), root)
    (root / lake.LAKE_META).unlink()  # as if a run died after rewriting, before recording
    assert lake.ensure_record_ids(root) == 1
    assert lake.scan_events(root).collect().sort("line_number").equals(events)


def test_re_ingesting_a_batch_replaces_its_own_parts_and_changes_nothing(tmp_path):
    root = tmp_path / "lake"
    path = write_lines(tmp_path / "e.jsonl", [json_line(v2()), json_line(v1())])
    first, before = ingest(path, root)
    again, after = ingest(path, root)
    assert after.equals(before)
    assert again.accounting.accepted == first.accounting.accepted == 2
    assert again.accounting.duplicates == 0


def test_events_land_in_hive_style_date_region_parts_with_dagster_keys(tmp_path):
    root = tmp_path / "lake"
    lines = [
        json_line(v2(ts="2026-10-30T23:59:59Z")),
        json_line(v2(ts="2026-10-31T00:00:00Z")),
        json_line(v2(region="eu-west", device_id="SN-EUW-00000001")),
    ]
    result, events = ingest(write_lines(tmp_path / "f.jsonl", lines), root)
    batch = result.batch
    assert sorted(p.relative_to(root).as_posix() for p in lake.event_files(root)) == [
        f"telemetry_events/date=2026-10-30/region=us-east/batch-{batch}.parquet",
        f"telemetry_events/date=2026-10-31/region=eu-west/batch-{batch}.parquet",
        f"telemetry_events/date=2026-10-31/region=us-east/batch-{batch}.parquet",
    ]
    assert result.accounting.partitions == {
        "2026-10-30|us-east": 1,
        "2026-10-31|eu-west": 1,
        "2026-10-31|us-east": 1,
    }
    assert set(events["partition_key"]) == set(result.accounting.partitions)


def test_a_truncated_gzip_leaves_no_events_and_one_dead_letter(tmp_path):
    root = tmp_path / "lake"
    path = write_lines(
        tmp_path / "g.jsonl.gz", [json_line(v2(retry_count=n % 50)) for n in range(500)]
    )
    path.write_bytes(path.read_bytes()[:-40])
    result, events = ingest(path, root)
    assert events.height == 0 and result.accounting.unreadable == "gzip:corrupt"
    assert not list((root / "_staging").glob("*"))


def test_a_write_killed_half_way_leaves_the_previous_part_readable(tmp_path, monkeypatch):
    root = tmp_path / "lake"
    path = write_lines(tmp_path / "h.jsonl", [json_line(v2())])
    _, before = ingest(path, root)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(path, root)
    monkeypatch.undo()
    assert lake.scan_events(root).collect().equals(before)
    assert [p.name for p in lake.event_files(root)] == [
        f"batch-{landing.batch_id(landing.content_hash(path))}.parquet"
    ]


def test_the_catalog_views_read_the_lake(tmp_path):
    root = tmp_path / "lake"
    ingest(write_lines(tmp_path / "i.jsonl", [json_line(v2()), "{bad"]), root)
    with duckdb.connect() as conn:
        assert lake.create_lake_views(conn, root) == ["telemetry_events", "dead_letters"]
        assert conn.sql("SELECT count(*) FROM telemetry_events").fetchall() == [(1,)]
        assert conn.sql("SELECT reason FROM dead_letters").fetchall() == [("json:malformed",)]


def test_rebuilding_a_partition_re_reads_its_batches_and_gives_the_same_events(tmp_path):
    root = tmp_path / "lake"
    first = write_lines(tmp_path / "j1.jsonl", [json_line(v2()), json_line(v1())])
    second = write_lines(tmp_path / "j2.jsonl", [json_line(v2()), json_line(v2(retry_count=4))])
    batches = {}
    for path in (first, second):
        batches[ingest_file(path, root, now=datetime.now(UTC)).batch] = path
    key = "2026-10-31|us-east"
    before = lake.scan_partition(root, "2026-10-31", "us-east").collect().sort("record_id")
    for part in lake.event_files(root):
        part.unlink()  # history lost from the lake, the landed files remain
    rebuilt = rebuild_partition(root, key, batches)
    assert rebuilt.sort("record_id").equals(before)


# --- every line accounted for exactly once (property) --------------------------------------

valid_v2 = st.builds(
    lambda minute, battery, status: v2(
        ts=f"2026-10-31T03:{minute:02d}:00Z", battery_pct=battery, update_status=status,
        failure_kind="download_timeout" if status == "failed" else None,
    ),
    st.integers(0, 59),
    st.sampled_from([0, 12.5, 100]),
    st.sampled_from(["failed", "pending", "success"]),
)  # fmt: skip
valid_v1 = st.builds(
    lambda second, battery: v1(timestamp=1793416500 + second, battery=battery),
    st.integers(0, 10),
    st.sampled_from([0, 0.5, 1]),
)
broken_record = st.sampled_from([v2(battery_pct=101), v1(status="Done"), v2(ts="soon"), {}])
STRUCTURAL = {"jsonl": ['{"device_id": 1', "[]", "42"], "csv": ["SN-USE-1,us-east", "a,b"]}
structural = st.integers(0, 1).map(lambda i: ("structural", i))
# Random bytes: no line break (that would be two lines) and no NUL (a binary file).
random_bytes = st.binary(max_size=40).map(
    lambda b: b"x" + b.replace(b"\n", b"").replace(b"\x00", b"")
)
blank = st.sampled_from(["", "  "])


def render(kind: str, item) -> str | bytes:
    if isinstance(item, dict):
        return json_line(item) if kind == "jsonl" else csv_line(item)
    if isinstance(item, tuple):
        return STRUCTURAL[kind][item[1]]
    return item


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["jsonl", "csv"]),
    items=st.lists(
        st.one_of(valid_v2, valid_v1, broken_record, structural, random_bytes, blank),
        min_size=1,
        max_size=40,
    ).flatmap(lambda ls: st.lists(st.sampled_from(ls), min_size=len(ls), max_size=2 * len(ls))),
    block=st.sampled_from([1024, 4096, 2**20]),  # longer than any line
)
def test_every_line_is_accepted_a_duplicate_or_a_dead_letter_exactly_once(
    tmp_path_factory, monkeypatch, kind, items, block
):
    from sentinel_assets.telemetry import wire

    monkeypatch.setattr(wire, "CHUNK_BYTES", block)
    folder = tmp_path_factory.mktemp("prop")
    lines = [render(kind, item) for item in items]
    path = write_lines(folder / f"p.{kind}", lines)
    result, events = ingest(path, folder / "lake")
    acc = result.accounting
    assert acc.unreadable is None
    first = 2 if kind == "csv" else 1  # the CSV header is line 1
    encoded = {
        n: line if isinstance(line, bytes) else line.encode() for n, line in enumerate(lines, first)
    }
    data_lines = {n for n, line in encoded.items() if line.strip()}
    accepted = set(events["line_number"])
    dead = set(reasons_of(result))
    assert not accepted & dead
    assert accepted | dead <= data_lines
    duplicates = data_lines - accepted - dead
    # A duplicate is a line equal to an accepted one earlier in the file: a resend keeps its
    # first line, also when the two are in different chunks.
    first_accepted = {}
    for n in sorted(accepted):
        first_accepted.setdefault(encoded[n], n)
    assert all(first_accepted.get(encoded[n], n) < n for n in duplicates)
    assert acc.data_lines == len(data_lines) == acc.accepted + acc.duplicates + acc.dead_letters
    assert acc.duplicates == len(duplicates)
    assert check_contract(events, TELEMETRY_EVENT_SCHEMA).passed


# --- the fleet from telemetry --------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_lake(tmp_path_factory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("sim")
    plan = SimulationPlan(days=2, devices_per_region=120, regions=("us-east", "eu-west"))
    files = simulate(folder / "landing", plan)
    for path in files:
        ingest_file(path, folder / "lake")
    return folder / "lake", files


def test_the_simulator_writes_mixed_realistic_files(simulated_lake):
    root, files = simulated_lake
    assert {"".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix for p in files} >= {
        ".csv", ".jsonl"
    }  # fmt: skip
    events = lake.scan_events(root).collect()
    per_region = events.group_by("region").agg(pl.col("schema_version").unique().sort())
    assert per_region["schema_version"].to_list() == [[1, 2], [1, 2]]
    readings = events.group_by("device_id", "event_date").len()["len"]
    assert readings.median() >= 3
    dead = pl.read_parquet(list((root / "dead_letters").glob("*.parquet")))
    assert dead.height > 0
    for manifest in lake.read_manifests(root):
        assert manifest["balanced"]


def test_the_fleet_is_the_latest_event_per_device_as_of_the_snapshot(simulated_lake):
    root, _ = simulated_lake
    snapshot = fleet_from_events(lake.scan_events(root), "us-east", AS_OF)
    assert check_contract(snapshot.fleet, FLEET_SCHEMA).passed
    events = lake.scan_events(root).filter(pl.col("region") == "us-east").collect()
    latest = events.group_by("device_id").agg(pl.col("ts").max())
    expected = dict(latest.iter_rows())
    seen = dict(snapshot.fleet.select("device_id", "last_seen_at").iter_rows())
    assert all(expected[device] == at for device, at in seen.items())
    assert set(seen) | set(snapshot.excluded["device_id"]) == set(expected)


def test_events_after_the_snapshot_are_not_in_the_fleet(simulated_lake):
    root, _ = simulated_lake
    early = datetime(2026, 10, 31, tzinfo=UTC)
    snapshot = fleet_from_events(lake.scan_events(root), "us-east", early)
    assert snapshot.fleet.height > 0
    assert (snapshot.fleet["last_seen_at"] <= early).all()


def test_a_device_whose_latest_event_is_v1_is_excluded_with_its_reasons(tmp_path):
    root = tmp_path / "lake"
    ingest(
        write_lines(
            tmp_path / "k.jsonl",
            [json_line(v2()), json_line(v1(device_id="SN-USE-00000001", timestamp=1793416560))],
        ),
        root,
    )
    snapshot = fleet_from_events(lake.scan_events(root), "us-east", AS_OF)
    assert snapshot.fleet.height == 0
    [reasons] = snapshot.excluded["reasons"].to_list()
    assert "battery_voltage_v:missing" in reasons


@given(st.lists(st.text(max_size=30), min_size=1, max_size=300))
@settings(max_examples=25, deadline=None)
def test_record_ids_are_md5_hence_stable_everywhere_and_keep_their_order(keys):
    import hashlib

    from sentinel_assets.telemetry.dead_letters import stable_ids

    ids = stable_ids(pl.Series(keys, dtype=pl.String)).to_list()
    mask = (1 << 63) - 1
    md5 = [int.from_bytes(hashlib.md5(k.encode()).digest()[:8], "little") & mask for k in keys]
    assert ids == md5


def _several_files(folder: Path) -> list[Path]:
    """Files whose events overlap: each resends one event of the file before it."""
    files = []
    for n in range(5):
        lines = [json_line(v2(retry_count=n)), json_line(v2(retry_count=n + 1))]
        lines += [
            json_line(v2(device_id=f"SN-USE-{n:08d}", battery_pct=20.0 + m)) for m in range(30)
        ]
        files.append(write_lines(folder / f"f{n}.jsonl", lines))
    files.append(write_lines(folder / "broken.jsonl.gz", [b"not gzip"]))
    files[-1].write_bytes(b"\x1f\x8b truncated")
    return files


def test_files_read_side_by_side_end_as_if_ingested_one_after_another(tmp_path):
    from sentinel_assets.telemetry.ingest import ingest_files

    files = _several_files(tmp_path / "in")
    one_by_one = [ingest_file(p, tmp_path / "a").accounting for p in files]
    side_by_side = [r.accounting for r in ingest_files(files, tmp_path / "b", workers=3)]

    def summary(accounting):
        return {k: v for k, v in accounting.as_dict().items() if k != "seconds"}

    assert [summary(a) for a in side_by_side] == [summary(a) for a in one_by_one]
    assert [a.duplicates for a in side_by_side] == [0, 1, 1, 1, 1, 0]
    assert side_by_side[-1].unreadable == "gzip:corrupt"

    def events(root):
        return lake.scan_events(root).drop("ingested_at").collect().sort("record_id")

    assert events(tmp_path / "b").equals(events(tmp_path / "a"))


def test_a_resend_is_the_later_files_duplicate_even_when_that_file_is_read_first(tmp_path):
    from sentinel_assets.telemetry.ingest import ingest_files

    resent = json_line(v2(retry_count=7))
    # The first file is long (read last of the two), the second one line, the resend.
    first = [json_line(v2(device_id=f"SN-USE-{n:08d}")) for n in range(5_000)] + [resent]
    files = [
        write_lines(tmp_path / "long.jsonl", first),
        write_lines(tmp_path / "s.jsonl", [resent]),
    ]
    results = [r.accounting for r in ingest_files(files, tmp_path / "lake", workers=2)]
    assert [(a.accepted, a.duplicates) for a in results] == [(5_001, 0), (0, 1)]
    kept = lake.scan_events(tmp_path / "lake").filter(pl.col("retry_count") == 7).collect()
    assert kept["source_file"].to_list() == ["long.jsonl"]


def test_stopping_early_leaves_nothing_staged(tmp_path):
    from sentinel_assets.telemetry.ingest import ingest_files

    files = _several_files(tmp_path / "in")
    results = ingest_files(files, tmp_path / "lake", workers=2)
    first = next(results)
    results.close()
    assert first.accounting.accepted == 32
    assert not any((tmp_path / "lake" / "_staging").rglob("*.parquet"))
    assert len(lake.read_manifests(tmp_path / "lake")) == 1


def test_a_file_of_mostly_rejected_lines_still_lands_its_good_ones(tmp_path):
    # Regression: the accepted rows of such a file are a filtered, many-chunk frame, on which
    # Polars 2.1's `pl.format` panicked while building the partition key.
    lines = [json_line(v2(device_id=f"SN-USE-{n:08d}", battery_pct=n / 10)) for n in range(5_000)]
    result, events = ingest(write_lines(tmp_path / "m.jsonl", lines), tmp_path / "lake")
    assert (result.accounting.accepted, result.accounting.dead_letters) == (1_001, 3_999)
    assert events["partition_key"].unique().to_list() == ["2026-10-31|us-east"]
