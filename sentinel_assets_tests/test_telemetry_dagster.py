"""Through Dagster: the landing sensor, the ingestion runs and their checks, the events
backfill, and the fleet graph on landed telemetry."""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb
import polars as pl
import pydantic
import pytest

from sentinel_assets.definitions import defs
from sentinel_assets.defs.partitions import event_partitions, landing_batches
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.paths import CATALOG_FILE
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.simulate import SimulationPlan, simulate
from sentinel_assets_tests.landing_daemon import Landing
from sentinel_assets_tests.telemetry_helpers import json_line, v2, write_lines

pytestmark = pytest.mark.slow
REGIONS = ("us-east", "eu-west")
LANDING = {"resources": {"settings": {"config": {"simulation": {"source": "landing"}}}}}


def test_the_telemetry_assets_are_partitioned_and_checked_as_documented():
    graph = defs().resolve_asset_graph()
    events = graph.get(dg.AssetKey("telemetry_events")).partitions_def
    assert isinstance(events, dg.MultiPartitionsDefinition)
    assert [d.name for d in events.partitions_defs] == ["date", "region"]
    key = events.get_partition_keys()[0]
    day, region = key.keys_by_dimension["date"], key.keys_by_dimension["region"]
    assert str(key) == lake.partition_key(day, region)  # the `partition_key` column's format
    assert graph.get(dg.AssetKey("dead_letters")).partitions_def == landing_batches
    checks = {
        (k.asset_key.to_user_string(), k.name): graph.get_check_spec(k)
        for k in graph.asset_check_keys
        if k.asset_key.to_user_string() in ("telemetry_events", "dead_letters")
    }
    assert set(checks) == {
        ("dead_letters", "contract"),
        ("dead_letters", "lines_accounted"),
        ("dead_letters", "events_contract"),
        ("telemetry_events", "contract"),
    }
    assert all(spec.blocking for spec in checks.values())
    assert event_partitions is events


def test_landed_files_are_ingested_once_and_the_fleet_graph_runs_on_them(sentinel_home, instance):
    landing = Landing(sentinel_home, instance)
    plan = SimulationPlan(days=2, devices_per_region=150, regions=REGIONS)
    files = simulate(landing.folder, plan)
    results = landing.drain()
    assert len(results) == len(files)
    for result in results:
        evaluations = result.get_asset_check_evaluations()
        assert {e.check_name for e in evaluations} == {
            "contract",
            "lines_accounted",
            "events_contract",
        }
        assert all(e.passed for e in evaluations)
        materialized = {
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
        }
        assert ("dead_letters", result.dagster_run.tags["dagster/partition"]) in materialized
        assert any(asset == "telemetry_events" for asset, _ in materialized)
    assert landing.tick() == []  # nothing new: no run twice

    with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
        [(events,)] = conn.sql("SELECT count(*) FROM telemetry_events").fetchall()
        [(letters,)] = conn.sql("SELECT count(*) FROM dead_letters").fetchall()
    accounted = [m for m in lake.read_manifests(sentinel_home / "lake")]
    assert events == sum(m["accepted"] for m in accounted) and letters > 0

    refresh = (
        defs()
        .resolve_job_def("fleet_refresh")
        .execute_in_process(
            partition_key="eu-west",
            instance=instance,
            resources=landing.resources,
            run_config=LANDING,
            raise_on_error=False,
        )
    )
    assert refresh.success
    assert all(e.passed for e in refresh.get_asset_check_evaluations())
    [raw] = [
        e
        for e in refresh.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "raw_fleet"
    ]
    devices = raw.materialization.metadata["devices"].value
    fleet = pl.read_parquet(sentinel_home / "tables" / "raw_fleet" / "region=eu-west.parquet")
    assert devices == fleet.height > 100
    assert fleet["device_id"].str.starts_with("SN-EUW-").all()


def test_redropped_changed_late_and_unreadable_files(sentinel_home, instance):
    landing = Landing(sentinel_home, instance)
    first = write_lines(landing.folder / "gw-7.jsonl", [json_line(v2())])
    copy = first.read_bytes()
    [result] = landing.drain()
    # The same bytes again, under another name: a no-op.
    (landing.folder / "gw-7-again.jsonl").write_bytes(copy)
    assert landing.tick() == []
    assert not (landing.folder / "gw-7-again.jsonl").exists()
    # Changed bytes under the same name: a new batch.
    write_lines(landing.folder / "gw-7.jsonl", [json_line(v2(retry_count=5))])
    [changed] = landing.drain()
    assert (
        changed.dagster_run.tags["dagster/partition"]
        != result.dagster_run.tags["dagster/partition"]
    )
    # A file written slowly is not read until renamed; then one arriving late (an older day).
    slow = write_lines(
        landing.folder / "late.jsonl.tmp", [json_line(v2(ts="2026-10-02T00:00:00Z"))]
    )
    assert landing.tick() == []
    slow.rename(landing.folder / "late.jsonl")
    assert len(landing.drain()) == 1
    events = lake.scan_events(sentinel_home / "lake").collect()
    assert "2026-10-02|us-east" in set(events["partition_key"])
    # Garbage: one dead letter, the file moved aside, the sensor carries on.
    (landing.folder / "noise.csv.gz").write_bytes(b"\x1f\x8b not really gzip")
    write_lines(landing.folder / "next.jsonl", [json_line(v2(retry_count=7))])
    runs = landing.drain()
    assert len(runs) == 2
    assert list((landing.folder / "_rejected").glob("*/noise.csv.gz"))
    unreadable = [m for m in lake.read_manifests(sentinel_home / "lake") if m["unreadable"]]
    assert [m["unreadable"] for m in unreadable] == ["gzip:corrupt"]


def test_a_corrupt_cursor_does_not_ingest_anything_twice(sentinel_home, instance):
    landing = Landing(sentinel_home, instance)
    write_lines(landing.folder / "a.jsonl", [json_line(v2())])
    landing.drain()
    landing.cursor = "{not json"
    assert landing.tick() == []


def test_backfilling_an_events_partition_re_reads_the_landed_files(sentinel_home, instance):
    landing = Landing(sentinel_home, instance)
    write_lines(landing.folder / "a.jsonl", [json_line(v2()), json_line(v2(retry_count=2))])
    landing.drain()
    root = sentinel_home / "lake"
    before = lake.scan_events(root).collect().sort("record_id")
    shutil.rmtree(root / "telemetry_events")  # lost: the landed batches remain
    key = "2026-10-31|us-east"
    result = dg.materialize(
        [defs().get_assets_def("telemetry_events")],
        partition_key=key,
        instance=instance,
        resources=landing.resources,
        selection=["telemetry_events"],
        raise_on_error=False,
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert lake.scan_events(root).collect().sort("record_id").equals(before)


def test_the_fleet_source_and_landing_folder_come_from_the_environment(
    sentinel_home, monkeypatch, tmp_path
):
    assert build_resources(sentinel_home)["settings"].simulation.source == "simulator"
    monkeypatch.setenv("SENTINEL_FLEET_SOURCE", "landing")
    monkeypatch.setenv("SENTINEL_LANDING_DIR", str(tmp_path / "inbox"))
    resources = build_resources(sentinel_home)
    assert resources["settings"].simulation.source == "landing"
    assert resources["telemetry"].landing == tmp_path / "inbox"
    assert resources["telemetry"].lake == sentinel_home / "lake"
    monkeypatch.setenv("SENTINEL_FLEET_SOURCE", "kafka")
    with pytest.raises(pydantic.ValidationError, match="simulator"):
        build_resources(sentinel_home)
