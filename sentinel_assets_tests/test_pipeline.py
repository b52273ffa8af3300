"""End to end through Dagster: the asset graph, its checks and its failure modes."""

import dagster as dg
import duckdb
import polars as pl
import pytest

from sentinel_assets import warehouse
from sentinel_assets.contracts import FAULT_KINDS
from sentinel_assets.definitions import defs  # module helpers; tests take `definitions`
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.paths import CATALOG_FILE

pytestmark = pytest.mark.slow

FLEET_ASSETS = [
    "raw_fleet",
    "corrupted_fleet",
    "chaos_ledger",
    "sanitized_fleet",
    "quarantine",
    "recovery_decisions",
    "campaign_status",
    "recovery_outcomes",
]


def refresh(home, instance, region, run_config=None):
    job = defs().resolve_job_def("fleet_refresh")
    return job.execute_in_process(
        partition_key=region,
        instance=instance,
        resources=build_resources(home),
        run_config=run_config,
        raise_on_error=False,
    )


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def row_counts(result) -> dict[str, int]:
    """`dagster/row_count` of each materialization of the run, by asset."""
    return {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }


def test_the_graph_has_the_documented_assets_and_partitions(definitions):
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys >= {*FLEET_ASSETS, "regional_rank"}
    for asset in FLEET_ASSETS:
        partitions = graph.get(dg.AssetKey(asset)).partitions_def
        assert len(partitions.get_partition_keys()) == 8
    assert graph.get(dg.AssetKey("regional_rank")).partitions_def is None


def test_every_asset_has_a_blocking_contract_check(definitions):
    graph = definitions.resolve_asset_graph()
    checked = {
        key.asset_key.to_user_string(): graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.name == "contract"
    }
    assert set(checked) >= {*FLEET_ASSETS, "regional_rank"}
    assert all(spec.blocking for spec in checked.values())


def test_two_regions_then_the_report_materialize_with_every_check_passing(
    definitions, sentinel_home, instance
):
    shard_rows: dict[str, int] = {}
    for region in ["us-east", "af-south"]:
        result = refresh(sentinel_home, instance, region)
        assert result.success
        assert materialized(result) == set(FLEET_ASSETS)
        for asset, rows in row_counts(result).items():
            shard_rows[asset] = shard_rows.get(asset, 0) + rows
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) >= 9
        assert all(e.passed for e in evaluations), [
            e.asset_check_key for e in evaluations if not e.passed
        ]
        assert all(e.partition == region for e in evaluations)
    # Users query `FROM alerts` before anything has failed: it exists, empty, from the start.
    with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
        assert conn.sql("SELECT count(*) FROM alerts").fetchall() == [(0,)]

    report = definitions.resolve_job_def("regional_report").execute_in_process(
        instance=instance, resources=build_resources(sentinel_home), raise_on_error=False
    )
    assert report.success
    report_rows = row_counts(report)
    reports = dg.AssetSelection.groups("reports").resolve(definitions.resolve_asset_graph())
    assert set(report_rows) == {key.to_user_string() for key in reports}
    with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
        regions = conn.sql("SELECT DISTINCT region FROM regional_rank ORDER BY 1").fetchall()
        assert regions == [("af-south",), ("us-east",)]
        # Every materialization records its rows: the shards' and the report tables'.
        for table, rows in {**shard_rows, **report_rows}.items():
            assert conn.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0] == rows, table
        for table in [*FLEET_ASSETS, "regional_rank"]:
            assert conn.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0] > 0
        corrupted, sanitized, quarantined = conn.sql(
            "SELECT (SELECT count(*) FROM corrupted_fleet), (SELECT count(*) FROM "
            "sanitized_fleet), (SELECT count(*) FROM quarantine)"
        ).fetchall()[0]
        assert corrupted == sanitized + quarantined


def shards(home, region) -> dict[str, object]:
    return {
        asset: warehouse.read_partition(warehouse.partition_file(home / "tables", asset, region))
        for asset in FLEET_ASSETS
    }


def test_downstream_steps_take_the_frames_just_written_from_memory_with_the_same_results(
    sentinel_home, instance, monkeypatch
):
    reads = []
    read_partition = warehouse.read_partition
    monkeypatch.setattr(
        warehouse, "read_partition", lambda path, *a: reads.append(path) or read_partition(path, *a)
    )
    assert refresh(sentinel_home, instance, "eu-west").success
    assert reads == []
    from_memory = shards(sentinel_home, "eu-west")

    reads.clear()
    no_cache = {"resources": {"io_manager": {"config": {"memory_cache_mb": 0}}}}
    assert refresh(sentinel_home, instance, "eu-west", run_config=no_cache).success
    # chaos <- raw; sanitization <- corrupted, ledger; campaign <- sanitized;
    # decisions <- sanitized, campaign; outcomes <- sanitized, decisions
    assert len(reads) == 8
    for asset, frame in shards(sentinel_home, "eu-west").items():
        assert frame.equals(from_memory[asset]), asset


def test_a_shard_replaced_by_another_process_is_read_again(tmp_path):
    path = tmp_path / "region=eu-west.parquet"
    warehouse.write_partition(pl.DataFrame({"record_id": [1, 2]}), path)
    written = warehouse.WrittenShard.of(path, pl.DataFrame({"record_id": [1, 2]}))
    assert written.is_on_disk()
    warehouse.write_partition(pl.DataFrame({"record_id": [3]}), path)
    assert not written.is_on_disk()
    path.unlink()
    assert not written.is_on_disk()


def test_rematerializing_a_region_replaces_only_that_region(sentinel_home, instance):
    refresh(sentinel_home, instance, "us-east")
    refresh(sentinel_home, instance, "eu-west")
    catalog = str(sentinel_home / CATALOG_FILE)
    with duckdb.connect(catalog, read_only=True) as conn:
        before = conn.sql("SELECT region, count(*) FROM raw_fleet GROUP BY 1 ORDER BY 1").fetchall()
    refresh(sentinel_home, instance, "us-east")
    with duckdb.connect(catalog, read_only=True) as conn:
        after = conn.sql("SELECT region, count(*) FROM raw_fleet GROUP BY 1 ORDER BY 1").fetchall()
    assert before == after == [("eu-west", 1500), ("us-east", 1500)]


def test_a_failed_blocking_check_stops_everything_downstream(sentinel_home, instance):
    chaos = {"rates": {"null": 0.6, "out_of_bounds": 0.6}}
    result = refresh(
        sentinel_home,
        instance,
        "eu-central",
        run_config={"resources": {"settings": {"config": {"chaos": chaos}}}},
    )
    assert not result.success
    gate = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "quarantine_rate_within_gate"
    ]
    assert len(gate) == 1 and not gate[0].passed
    assert "recovery_decisions" not in materialized(result)
    assert "sanitized_fleet" in materialized(result)  # stored, so it can be inspected
    # The check ran inside the sanitization step: that step fails once, and is not retried
    # (its RetryPolicy is for errors in the code, not for a failed contract).
    failures = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failures == ["sanitization"]
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"chaos": {"rates": {"null": 1.5}}}, "chaos.rates.null Input should be less than or"),
        ({"simulation": {"devices_per_region": -5}}, "greater than or equal to 0"),
        ({"recovery": {"max_retries": -1}}, "recovery.max_retries Input should be greater"),
    ],
)
def test_invalid_config_fails_before_any_data_is_written(sentinel_home, instance, config, message):
    result = refresh(
        sentinel_home,
        instance,
        "us-west",
        run_config={"resources": {"settings": {"config": config}}},
    )
    assert not result.success
    assert materialized(result) == set()
    assert not (sentinel_home / "tables").exists()
    errors = [str(e.event_specific_data.error) for e in result.all_events if e.is_failure]
    assert any(message in error for error in errors), errors


def test_an_unknown_fault_kind_is_refused_at_launch(sentinel_home, instance):
    # Dagster's own config check (the Launchpad's), before a run exists.
    config = {"resources": {"settings": {"config": {"chaos": {"rates": {"gremlins": 0.1}}}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match='unexpected config entry "gremlins"'):
        refresh(sentinel_home, instance, "us-west", run_config=config)
    assert not (sentinel_home / "tables").exists()


def test_an_unknown_partition_is_refused(sentinel_home, instance):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="mars"):
        refresh(sentinel_home, instance, "mars")


def test_the_record_key_joins_across_regions_without_false_matches(sentinel_home, instance):
    """record_id is unique across the warehouse, so the catalog's views join on it alone:
    ledger -> quarantine -> (nothing else), decisions -> outcomes, across every region."""
    chaos = {"rates": dict.fromkeys(FAULT_KINDS, 0.025)}  # ~14 % quarantined: under the gate
    for region in ["us-east", "eu-west", "af-south"]:
        config = {"resources": {"settings": {"config": {"chaos": chaos}}}}
        assert refresh(sentinel_home, instance, region, run_config=config).success
    with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:

        def one(sql: str) -> tuple:
            [row] = conn.sql(sql).fetchall()
            return row

        for table in ["corrupted_fleet", "sanitized_fleet", "quarantine", "recovery_decisions"]:
            rows, ids, shards = one(
                f"SELECT count(*), count(DISTINCT record_id), count(DISTINCT partition_key) "
                f"FROM {table}"
            )
            assert rows == ids > 0 and shards == 3, table
        assert one("SELECT count(*) FROM sanitized_fleet JOIN quarantine USING (record_id)") == (0,)
        # every fault is traced to exactly one quarantined record, of the same shard
        faults, traced, same_shard = one(
            "SELECT count(*), count(q.record_id), "
            "count(*) FILTER (WHERE q.partition_key = l.partition_key) "
            "FROM chaos_ledger AS l LEFT JOIN quarantine AS q USING (record_id)"
        )
        assert faults == traced == same_shard > 0
        # every decision has exactly its device's outcome
        decisions, outcomes, same = one(
            "SELECT count(*), count(o.record_id), "
            "count(*) FILTER (WHERE o.partition_key = d.partition_key AND o.action = d.action "
            "AND o.device_id = d.device_id) "
            "FROM recovery_decisions AS d LEFT JOIN recovery_outcomes AS o USING (record_id)"
        )
        assert decisions == outcomes == same > 0
        # a record whose region cell was corrupted still names the shard it came from
        blank_region, unknown_shard = one(
            "SELECT count(*) FILTER (WHERE region IS NULL), "
            "count(*) FILTER (WHERE partition_key IS NULL) FROM corrupted_fleet"
        )
        assert blank_region > 0 and unknown_shard == 0
