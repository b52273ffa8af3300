"""Wire formats and schema versions: every rule of issue 11, positive and negative."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_assets.contracts import BOUNDS, DEAD_LETTER_SCHEMA, TELEMETRY_EVENT_SCHEMA
from sentinel_assets.telemetry import wire
from sentinel_assets.validation import check_contract
from sentinel_assets_tests.telemetry_helpers import (
    CSV_HEADER,
    csv_line,
    ingest,
    json_line,
    reasons_of,
    v1,
    v2,
    write_lines,
)


@pytest.fixture
def lake_root(tmp_path):
    return tmp_path / "lake"


@pytest.mark.parametrize("name", ["mixed.jsonl", "mixed.csv", "mixed.jsonl.gz", "mixed.csv.gz"])
def test_one_file_may_mix_v1_and_v2_records(tmp_path, lake_root, name):
    to_line = csv_line if ".csv" in name else json_line
    path = write_lines(
        tmp_path / name, [to_line(v2()), to_line(v1()), to_line(v2(ts="2026-10-31T04:00:00Z"))]
    )
    result, events = ingest(path, lake_root)
    assert result.dead_letters.height == 0, result.dead_letters["reasons"].to_list()
    assert events["schema_version"].to_list() == [2, 1, 2]
    assert events["line_number"].to_list() == ([2, 3, 4] if ".csv" in name else [1, 2, 3])
    assert check_contract(events, TELEMETRY_EVENT_SCHEMA).passed
    assert result.accounting.balanced and result.accounting.accepted == 3


def test_v1_is_upcast_with_the_documented_conversions(tmp_path, lake_root):
    record = v1(
        timestamp="1793416500.25",
        status="Failed",
        battery=0.42,
        temp_f=212 - 180,
        signal=-77,
        retries=3,
    )
    _, events = ingest(write_lines(tmp_path / "a.jsonl", [json_line(record)]), lake_root)
    [event] = events.to_dicts()
    assert event["ts"] == datetime.fromtimestamp(1793416500.25, UTC)
    assert event["update_status"] == "failed"
    assert event["battery_pct"] == pytest.approx(42.0)
    assert event["temperature_c"] == pytest.approx(0.0)
    assert (event["signal_dbm"], event["retry_count"]) == (-77, 3)
    assert (event["firmware_from"], event["firmware_to"]) == ("4.1.0", "4.2.0")
    # Fields a V1 agent does not send stay NULL: never invented.
    for column in ("failure_kind", "battery_voltage_v", "boot_attempts", "commit_state", "site"):
        assert event[column] is None, column


@pytest.mark.parametrize(
    ("fields", "accepted_or_reason"),
    [
        ({"battery": 0}, 0.0),
        ({"battery": 1}, 100.0),
        ({"battery": 1.0001}, "battery_pct:out_of_range"),
        ({"battery": -0.001}, "battery_pct:out_of_range"),
        ({"battery": "87%"}, "battery:not_a_number"),
        ({"temp_f": -40}, -40.0),
        ({"temp_f": 185}, 85.0),
        ({"temp_f": 185.2}, "temperature_c:out_of_range"),
        ({"temp_f": -40.2}, "temperature_c:out_of_range"),
        ({"status": "success"}, "status:not_allowed"),
        ({"status": "Done"}, "status:not_allowed"),
        ({"timestamp": "yesterday"}, "timestamp:unparsable"),
        ({"signal": -130}, -130),
        ({"signal": -131}, "signal_dbm:out_of_range"),
        ({"signal": -80.5}, "signal:not_an_integer"),
        ({"retries": None}, "retries:missing"),
    ],
)
def test_v1_conversions_at_their_boundaries(tmp_path, lake_root, fields, accepted_or_reason):
    result, events = ingest(write_lines(tmp_path / "b.jsonl", [json_line(v1(**fields))]), lake_root)
    if isinstance(accepted_or_reason, str):
        assert events.height == 0
        assert accepted_or_reason in reasons_of(result)[1]
    else:
        [column] = {"battery": "battery_pct", "temp_f": "temperature_c", "signal": "signal_dbm"}[
            next(iter(fields))
        ].split()
        assert events[column].to_list() == [pytest.approx(accepted_or_reason)]


@pytest.mark.parametrize(
    ("fields", "accepted_or_reason"),
    [
        ({"ts": "2026-10-31T03:15:00Z"}, datetime(2026, 10, 31, 3, 15, tzinfo=UTC)),
        (
            {"ts": "2026-10-31T05:15:00.5+02:00"},
            datetime(2026, 10, 31, 3, 15, 0, 500000, tzinfo=UTC),
        ),
        ({"ts": "2026-10-31T03:15:00"}, "ts:unparsable"),
        ({"ts": "31/10/2026 03:15"}, "ts:unparsable"),
        ({"battery_pct": BOUNDS["battery_pct"].high}, None),
        ({"battery_pct": BOUNDS["battery_pct"].high + 0.1}, "battery_pct:out_of_range"),
        ({"battery_voltage_v": 2.4}, "battery_voltage_v:out_of_range"),
        ({"temperature_c": 85.1}, "temperature_c:out_of_range"),
        ({"boot_attempts": 21}, "boot_attempts:out_of_range"),
        ({"update_status": "Success"}, "update_status:not_allowed"),
        ({"failure_kind": "gremlins"}, "failure_kind:not_allowed"),
        ({"update_status": "success"}, "failure_kind:set_without_failure"),
        ({"commit_state": "written"}, "commit_state:set_without_partial"),
        ({"device_id": "SN_USE_1"}, "device_id:malformed"),
        ({"firmware_to": "v4"}, "firmware_to:malformed"),
        ({"region": "mars-north"}, "region:unknown"),
        ({"model": "toaster"}, "model:unknown"),
        ({"hardware_rev": "rev-z"}, "hardware_rev:not_allowed"),
        ({"schema_version": 3}, "schema_version:mismatch"),
        ({"signal_dbm": "N/A"}, "signal_dbm:not_a_number"),
        ({"retry_count": "1.5"}, "retry_count:not_an_integer"),
        ({"model": None}, "model:missing"),
    ],
)
def test_v2_rules(tmp_path, lake_root, fields, accepted_or_reason):
    result, events = ingest(write_lines(tmp_path / "c.jsonl", [json_line(v2(**fields))]), lake_root)
    if isinstance(accepted_or_reason, str):
        assert events.height == 0
        assert accepted_or_reason in reasons_of(result)[1]
    else:
        assert events.height == 1, reasons_of(result)
        if accepted_or_reason is not None:
            assert events["ts"].to_list() == [accepted_or_reason]


def test_a_record_reports_every_rule_it_breaks(tmp_path, lake_root):
    line = json_line(v2(battery_pct=120, model="toaster", ts="soon"))
    result, _ = ingest(write_lines(tmp_path / "d.jsonl", [line]), lake_root)
    assert set(reasons_of(result)[1]) == {
        "battery_pct:out_of_range",
        "model:unknown",
        "ts:unparsable",
    }
    [letter] = result.dead_letters.to_dicts()
    assert letter["reason"] == letter["reasons"][0]


def test_a_configured_fleet_decides_regions_and_models(tmp_path, lake_root):
    path = write_lines(tmp_path / "e.jsonl", [json_line(v2(region="mars-north", model="rover-1"))])
    result, events = ingest(path, lake_root)
    assert set(reasons_of(result)[1]) == {"region:unknown", "model:unknown"}
    result, events = ingest(path, tmp_path / "lake2", regions=("mars-north",), models=("rover-1",))
    assert events["partition_key"].to_list() == ["2026-10-31|mars-north"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\xff\xfe{}", "encoding:invalid_utf8"),
        (b'{"device_id": "SN-USE-00000001",', "json:malformed"),
        (b"[1, 2]", "json:not_an_object"),
        (b"42", "json:not_an_object"),
        (b'{"device_id": "SN-USE-00000001"}', "schema:unknown_version"),
        (json_line({**v1(), **v2()}).encode(), "schema:unknown_version"),
        (b"{" + b'"a":"' + b"x" * (wire.MAX_LINE_BYTES + 1) + b'"}', "line:too_long"),
    ],
)
def test_json_line_reasons(tmp_path, lake_root, line, reason):
    result, events = ingest(write_lines(tmp_path / "f.jsonl", [json_line(v2()), line]), lake_root)
    assert events.height == 1
    assert reasons_of(result) == {2: [reason]}
    assert check_contract(result.dead_letters, DEAD_LETTER_SCHEMA).passed
    assert len(result.dead_letters["raw"][0]) <= 1024


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"SN-USE-00000001,us-east", "csv:field_count"),
        (csv_line(v2()).encode() + b",extra", "csv:field_count"),
        (
            csv_line(v2()).encode().replace(b"Springfield", b"Spr\xe9ngfield"),
            "encoding:invalid_utf8",
        ),
    ],
)
def test_csv_line_reasons(tmp_path, lake_root, line, reason):
    result, events = ingest(write_lines(tmp_path / "g.csv", [csv_line(v2()), line]), lake_root)
    assert events.height == 1
    assert reasons_of(result) == {3: [reason]}  # the header is line 1


def test_csv_fields_may_be_quoted_and_lines_may_end_in_crlf(tmp_path, lake_root):
    quoted = ",".join(f'"{field}"' if field else "" for field in csv_line(v2()).split(","))
    path = write_lines(tmp_path / "h.csv", [quoted + "\r"])
    result, events = ingest(path, lake_root)
    assert events["site"].to_list() == ["Springfield"] and result.accounting.balanced


def test_blank_lines_are_counted_not_dead_lettered(tmp_path, lake_root):
    path = write_lines(tmp_path / "i.jsonl", ["", json_line(v2()), "   ", ""])
    result, events = ingest(path, lake_root)
    assert (result.accounting.blank_lines, result.accounting.data_lines) == (3, 1)
    assert events["line_number"].to_list() == [2]


def test_unknown_fields_are_ignored(tmp_path, lake_root):
    path = write_lines(tmp_path / "j.jsonl", [json_line(v2(firmware_channel="beta"))])
    _, events = ingest(path, lake_root)
    assert events.height == 1


def test_parquet_rows_are_records_numbered_from_one(tmp_path, lake_root):
    frame = pl.DataFrame([v2(), v2(ts="2026-10-31T03:16:00+00:00", battery_pct=101.0)])
    frame.write_parquet(tmp_path / "k.parquet")
    result, events = ingest(tmp_path / "k.parquet", lake_root)
    assert events["line_number"].to_list() == [1]
    assert reasons_of(result) == {2: ["battery_pct:out_of_range"]}
    assert '"battery_pct":"101.0"' in result.dead_letters["raw"][0]


def test_a_parquet_timestamp_with_a_time_zone_is_read_as_iso(tmp_path, lake_root):
    frame = pl.DataFrame([v2()]).with_columns(
        pl.lit(datetime(2026, 10, 31, 3, 15, tzinfo=UTC)).alias("ts")
    )
    frame.write_parquet(tmp_path / "l.parquet")
    _, events = ingest(tmp_path / "l.parquet", lake_root)
    assert events["ts"].to_list() == [datetime(2026, 10, 31, 3, 15, tzinfo=UTC)]


def _file_reason(tmp_path, lake_root, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    result, events = ingest(path, lake_root)
    assert events.height == 0
    assert result.accounting.balanced and result.accounting.dead_letters == 1
    [letter] = result.dead_letters.to_dicts()
    assert letter["line_number"] == 0
    assert check_contract(result.dead_letters, DEAD_LETTER_SCHEMA).passed
    return letter["reason"]


def test_unreadable_files_become_one_dead_letter(tmp_path, lake_root):
    good = (json_line(v2()) + "\n").encode() * 50
    assert _file_reason(tmp_path, lake_root, "a.jsonl", b"") == "file:empty"
    assert _file_reason(tmp_path, lake_root, "b.jsonl", b"\x00\x01\x02garbage") == "file:binary"
    assert _file_reason(tmp_path, lake_root, "c.xml", good) == "file:unknown_format"
    assert (
        _file_reason(tmp_path, lake_root, "d.jsonl.gz", gzip.compress(good)[:-30]) == "gzip:corrupt"
    )
    assert _file_reason(tmp_path, lake_root, "e.csv.gz", b"not gzip at all") == "gzip:corrupt"
    assert _file_reason(tmp_path, lake_root, "f.csv", b",,\n1,2,3\n") == "csv:bad_header"
    assert _file_reason(tmp_path, lake_root, "g.parquet", good) == "parquet:unreadable"


@pytest.mark.parametrize("where", ["first", "middle", "last, without a break"])
@pytest.mark.parametrize("name", ["h.jsonl", "h.jsonl.gz"])
def test_a_line_over_the_block_size_is_one_dead_letter_and_the_rest_is_read(
    tmp_path, lake_root, monkeypatch, where, name
):
    monkeypatch.setattr(wire, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(wire, "MAX_LINE_BYTES", 1024)
    good = [json_line(v2(ts=f"2026-10-31T03:{m:02d}:00Z")) for m in range(30)]
    at = {"first": 0, "middle": 15, "last, without a break": 30}[where]
    lines = [*good[:at], "{" * 20_000, *good[at:]]
    data = "\n".join(lines).encode() + (b"" if at == 30 else b"\n")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    result, events = ingest(path, lake_root)
    assert result.accounting.balanced and result.accounting.unreadable is None
    assert events.height == 30
    [letter] = result.dead_letters.to_dicts()
    assert (letter["reason"], letter["line_number"]) == ("line:too_long", at + 1)


def test_a_csv_header_wider_than_any_line_makes_the_file_unreadable(tmp_path, lake_root):
    wide = ",".join(f"c{i}" for i in range(wire.MAX_CSV_COLUMNS + 1)).encode()
    assert _file_reason(tmp_path, lake_root, "w.csv", wide + b"\n1,2\n") == "csv:bad_header"
    fits = ",".join([*CSV_HEADER, *(f"c{i}" for i in range(100))]).encode()
    path = write_lines(tmp_path / "ok.csv", [fits, csv_line(v2()) + "," * 100], header=False)
    result, events = ingest(path, lake_root)
    assert result.accounting.unreadable is None and events.height == 1


def test_small_blocks_give_the_same_result_as_one_block(tmp_path, monkeypatch):
    lines = [json_line(v2(ts=f"2026-10-31T03:{m:02d}:00Z")) for m in range(60)] + ["{bad"] * 5
    path = write_lines(tmp_path / "m.jsonl", lines)
    whole, whole_events = ingest(path, tmp_path / "one")
    monkeypatch.setattr(wire, "CHUNK_BYTES", 700)
    chunked, chunked_events = ingest(path, tmp_path / "many")
    assert chunked_events.drop("ingested_at").equals(whole_events.drop("ingested_at"))
    assert reasons_of(chunked) == reasons_of(whole)


@given(
    st.lists(
        st.one_of(
            st.text(max_size=20).map(lambda t: t.replace("\n", " ").encode()),
            st.binary(max_size=20).map(lambda b: b.replace(b"\n", b" ")),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([0, 400]),  # ASCII lines around them: few lines to check, or most
)
@settings(max_examples=80, deadline=None)
def test_decoding_marks_exactly_the_lines_that_are_not_utf8_and_keeps_every_raw_text(
    lines, ascii_lines
):
    from sentinel_assets.telemetry.wire import _decoded

    lines = [b"{}"] * ascii_lines + lines + [b"[]"] * ascii_lines
    block = b"\n".join(lines) + b"\n"
    frame = _decoded(block, 1)
    assert frame["line_number"].to_list() == list(range(1, len(lines) + 1))
    for line, text, raw in zip(lines, frame["text"], frame["raw"], strict=True):
        lossy = line.decode("utf-8", "replace").rstrip("\r\n")
        assert raw == lossy
        try:
            assert text == line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            assert text is None


_plain_field = st.sampled_from(["", "a", "SN-USE-00000001", "4.1.0", "12.5", "South Kevin"])
_any_field = st.one_of(
    _plain_field,
    st.sampled_from([" 12.5", "7 ", '"x"', ' "y" ', "é", "\t3", "a\rb"]),
    st.text(alphabet=st.sampled_from('ab1 ."\t\r\u00a0é'), max_size=6),
)


@st.composite
def _csv_rows(draw) -> list[list[str]]:
    """Rows of three fields, plain ones (the fast path) or not, some of another width."""
    field = _plain_field if draw(st.booleans()) else _any_field
    width = st.just(3) if draw(st.booleans()) else st.sampled_from([2, 3, 3, 3, 4])
    return draw(st.lists(width.flatmap(lambda n: st.lists(field, min_size=n, max_size=n)),
                         min_size=1, max_size=12))  # fmt: skip


# Surrounding whitespace as Polars' `strip_chars()` sees it (Rust's White_Space, ASCII part).
_RUST_WHITESPACE = " \t\n\x0b\x0c\r\u0085\u00a0"


def _reference_fields(line: str, width: int) -> list[str | None] | None:
    """The documented CSV rule, one line in plain Python (None: wrong field count)."""
    fields = line.rstrip("\r\n").split(",")
    if len(fields) != width:
        return None
    values = [field.strip(_RUST_WHITESPACE).strip('"') for field in fields]
    return [value or None for value in values]


@given(
    header=st.sampled_from([["device_id", "region", "battery_pct"], ["site", "x", "model"]]),
    rows=_csv_rows(),
    blank_every=st.sampled_from([0, 0, 3]),
)
@settings(max_examples=200, deadline=None)
def test_csv_lines_are_split_and_stripped_as_documented(header, rows, blank_every):
    """Whatever the block holds (quotes, spaces, tabs, CR, non-ASCII, blank lines, lines
    with too few or too many fields), each line's fields are the documented rule's."""
    lines = [",".join(header)] + [
        "" if blank_every and n % blank_every == 0 else ",".join(row)
        for n, row in enumerate(rows, 1)
    ]
    block = ("\n".join(lines) + "\n").encode()
    decoded = wire._decoded(block, 1).slice(1)
    records = wire._csv_chunk(decoded, header, block).records
    expected = {
        n: _reference_fields(line, len(header))
        for n, line in enumerate(lines[1:], 2)
        if line.strip(_RUST_WHITESPACE)
    }
    assert records["line_number"].to_list() == list(expected)
    for record in records.to_dicts():
        fields = expected[record["line_number"]]
        if fields is None:
            assert record["wire_error"] == "csv:field_count"
        else:
            assert record["wire_error"] is None
            assert [record.get(name) for name in header if name in wire.WIRE_FIELDS] == [
                value
                for name, value in zip(header, fields, strict=True)
                if name in wire.WIRE_FIELDS
            ]
