"""One run for a range of regions (`fleet_and_reports`, what `sentinel demo` launches): each
region is still recorded per partition, its results equal a one-region run's, and one
region's failed check is that region's alone."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from benchmarks import dagster_floor
from sentinel_assets import warehouse
from sentinel_assets.cli.orchestrate import RANGE_END_TAG, RANGE_START_TAG
from sentinel_assets.contracts import REGIONS
from sentinel_assets.defs.resources import build_resources
from sentinel_assets_tests.test_pipeline import FLEET_ASSETS, refresh

pytestmark = [pytest.mark.slow, pytest.mark.long(40)]

THREE = list(REGIONS[:3])  # a contiguous range of the region partitions
REPORTS = list(warehouse.REPORT_TABLES)


def one_run(definitions, home: Path, instance, regions=THREE, run_config=None):
    job = definitions.resolve_job_def("fleet_and_reports")
    return job.execute_in_process(
        instance=instance,
        resources=build_resources(home),
        run_config=run_config,
        tags={RANGE_START_TAG: regions[0], RANGE_END_TAG: regions[-1]},
        raise_on_error=False,
    )


def by_partition(result) -> dict[tuple[str, str | None], dg.AssetMaterialization]:
    return {
        (e.asset_key.to_user_string(), e.partition): e.materialization
        for e in result.get_asset_materialization_events()
    }


def shards(home: Path, regions) -> dict[tuple[str, str], pl.DataFrame]:
    root = home / "tables"
    return {
        (asset, region): warehouse.read_partition(warehouse.partition_file(root, asset, region))
        for asset in FLEET_ASSETS
        for region in regions
    }


def report_tables(home: Path) -> dict[str, pl.DataFrame]:
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return {table: conn.table(table).pl() for table in REPORTS}


def quarantine_gate(rate: float) -> dict:
    return {"resources": {"settings": {"config": {"gates": {"max_quarantine_rate": rate}}}}}


def test_one_run_records_every_region_per_partition(definitions, sentinel_home, instance):
    result = one_run(definitions, sentinel_home, instance)
    assert result.success
    materialized = by_partition(result)
    frames = shards(sentinel_home, THREE)
    for asset in FLEET_ASSETS:
        for region in THREE:
            metadata = materialized[(asset, region)].metadata
            # each region's own numbers, not one set for the whole range
            assert metadata["dagster/row_count"].value == frames[(asset, region)].height
            assert f"region={region}" in metadata["shard"].value
    assert materialized[("raw_fleet", THREE[0])].metadata["devices"].value == 1500
    assert {key for key in materialized if key[1] is None} == {(r, None) for r in REPORTS}
    evaluations = result.get_asset_check_evaluations()
    per_region = {
        (e.asset_check_key.to_user_string(), e.partition)
        for e in evaluations
        if e.asset_check_key.asset_key.to_user_string() in FLEET_ASSETS
    }
    checks = {
        key.to_user_string()
        for key in definitions.resolve_asset_graph().asset_check_keys
        if key.asset_key.to_user_string() in FLEET_ASSETS
    }
    assert per_region == {(check, region) for check in checks for region in THREE}
    assert all(e.passed for e in evaluations)
    # what the benchmark's Dagster floor records for the same job shape (`benchmarks/README`)
    floor = dagster_floor.expected_records(dagster_floor.describe() | {"partitions": THREE})
    assert len(result.get_asset_materialization_events()) == floor["materializations"]
    assert len(evaluations) == floor["check_evaluations"]
    # the instance answers per partition too, as the UI asks it
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("quarantine"), asset_partitions=THREE[1:2]),
        limit=1,
    ).records[0]
    assert latest.partition_key == THREE[1] and latest.run_id == result.run_id


def test_one_run_gives_exactly_what_a_run_per_region_gives(
    definitions, sentinel_home, instance, tmp_path
):
    assert one_run(definitions, sentinel_home, instance).success
    apart = tmp_path / "apart"
    for region in THREE:
        assert refresh(apart, instance, region).success
    report = definitions.resolve_job_def("regional_report")
    assert report.execute_in_process(instance=instance, resources=build_resources(apart)).success
    together, separately = shards(sentinel_home, THREE), shards(apart, THREE)
    for key, frame in together.items():
        assert frame.equals(separately[key]), key
    for table, frame in report_tables(sentinel_home).items():
        assert frame.equals(report_tables(apart)[table]), table


def test_a_region_failing_its_check_in_one_run_fails_alone(definitions, sentinel_home, instance):
    """The gate set between the regions' own quarantine rates: the regions above it fail
    their check, the others pass theirs, and nothing downstream runs on any of them in this
    run (the step fails after every shard is stored); run one per region (what `sentinel
    demo` does next), the passing regions go all the way."""
    # (run config replaces the settings the environment gave, fleet size included: every
    # run here gets the same run config, only the gate differs)
    first = one_run(definitions, sentinel_home, instance, run_config=quarantine_gate(1.0))
    rates = {
        e.partition: e.materialization.metadata["quarantine_rate"].value
        for e in first.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "quarantine"
    }
    assert len(set(rates.values())) > 1, rates
    lowest, next_lowest = sorted(rates.values())[:2]
    gate = (lowest + next_lowest) / 2  # between two regions' (rounded) rates
    failing = {region for region, rate in rates.items() if rate > gate}
    assert failing and failing != set(THREE)

    result = one_run(definitions, sentinel_home, instance, run_config=quarantine_gate(gate))
    assert not result.success
    verdicts = {
        e.partition: e.passed
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "quarantine_rate_within_gate"
    }
    assert verdicts == {region: region not in failing for region in THREE}
    assert {p for a, p in by_partition(result) if a == "sanitized_fleet"} == set(THREE)
    assert not [a for a, _ in by_partition(result) if a == "recovery_decisions"]

    for region in THREE:
        alone = refresh(sentinel_home, instance, region, run_config=quarantine_gate(gate))
        assert alone.success is (region not in failing), region
        assert ("recovery_outcomes" in {a for a, _ in by_partition(alone)}) is alone.success
