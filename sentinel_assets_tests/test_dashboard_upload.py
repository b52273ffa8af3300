"""Upload from the dashboard, below Streamlit: a file is placed in the landing zone the way a
gateway does, and its ingestion result is read back by batch id once it was ingested."""

from __future__ import annotations

import pytest

from sentinel_assets import paths
from sentinel_assets.dashboard import upload
from sentinel_assets.telemetry import landing
from sentinel_assets_tests.telemetry_helpers import ingest, json_line, v2


def lines(*records: str) -> bytes:
    return "".join(f"{r}\n" for r in records).encode()


GOOD = lines(json_line(v2()), json_line(v2(retry_count=2)), "{not json", json_line(v2()))


def test_a_delivered_file_is_complete_on_arrival_and_leaves_nothing_half_written(tmp_path):
    delivery = upload.deliver(tmp_path / "landing", "gateway-7.jsonl", GOOD)
    assert delivery.path == tmp_path / "landing" / "gateway-7.jsonl"
    assert delivery.path.read_bytes() == GOOD
    assert landing.complete_files(tmp_path / "landing") == [delivery.path]
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == ["gateway-7.jsonl"]
    assert delivery.batch == landing.batch_id(landing.content_hash(delivery.path))


def test_a_different_file_waiting_under_the_same_name_is_never_overwritten(tmp_path):
    first = upload.deliver(tmp_path, "day.jsonl", GOOD)
    again = upload.deliver(tmp_path, "day.jsonl", GOOD)  # same bytes: the same batch, one file
    assert again == first and len(list(tmp_path.iterdir())) == 1
    other = upload.deliver(tmp_path, "day.jsonl", lines(json_line(v2(retry_count=5))))
    assert other.path.name == f"{other.batch}-day.jsonl" and other.batch != first.batch
    assert first.path.read_bytes() == GOOD


@pytest.mark.parametrize(
    "name", ["../escape.jsonl", "sub/x.csv", ".hidden.csv", "_batches.csv", "x.csv.part", ""]
)
def test_names_a_gateway_would_not_land_are_refused_in_one_sentence(tmp_path, name):
    with pytest.raises(upload.DeliveryError, match="not a plain file name"):
        upload.deliver(tmp_path, name, GOOD)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["notes.txt", "x.parquet.gz", "archive.tar.gz"])
def test_formats_ingestion_cannot_read_are_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(upload.DeliveryError, match=r"expected \.csv"):
        upload.deliver(tmp_path, name, GOOD)
    assert not any(tmp_path.iterdir())


def test_an_unwritable_landing_zone_is_one_sentence_naming_the_path(tmp_path):
    blocker = tmp_path / "landing"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(upload.DeliveryError, match=r"Cannot write .*landing.*writable") as error:
        upload.deliver(blocker, "a.jsonl", GOOD)
    assert "\n" not in str(error.value)


def test_the_result_is_pending_until_ingested_then_the_batch_accounting(tmp_path):
    lake = tmp_path / "lake"
    delivery = upload.deliver(tmp_path / "landing", "a.jsonl", GOOD)
    assert upload.result(lake, delivery.batch) is None
    ingested, _ = ingest(delivery.path, lake)
    shown = upload.result(lake, delivery.batch)
    assert shown is not None and shown.source_file == "a.jsonl"
    accounting = ingested.accounting
    assert (shown.accepted, shown.duplicates, shown.dead_letters) == (
        accounting.accepted,
        accounting.duplicates,
        accounting.dead_letters,
    )
    assert (shown.accepted, shown.duplicates, shown.dead_letters) == (2, 1, 1)
    assert shown.reasons.rows() == [("json:malformed", 1)]
    assert shown.letters.select("line_number", "reason").rows() == [(3, "json:malformed")]


def test_an_unreadable_upload_shows_its_whole_file_reason(tmp_path):
    lake = tmp_path / "lake"
    delivery = upload.deliver(tmp_path / "landing", "broken.jsonl.gz", b"not gzip at all")
    ingest(delivery.path, lake)
    shown = upload.result(lake, delivery.batch)
    assert shown is not None and shown.unreadable == "gzip:corrupt"
    assert (shown.accepted, shown.dead_letters) == (0, 1)


def test_the_landing_zone_moves_with_its_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(paths.LANDING_ENV, raising=False)
    assert paths.landing_root() == tmp_path / "home" / "landing"
    monkeypatch.setenv(paths.LANDING_ENV, str(tmp_path / "gateway-drop"))
    assert paths.landing_root() == tmp_path / "gateway-drop"
    # An explicit data folder is always its own landing zone.
    assert paths.landing_root(tmp_path / "other") == tmp_path / "other" / "landing"
