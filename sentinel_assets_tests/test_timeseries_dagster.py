"""Through Dagster: the time-series assets of a small simulated day, their checks, the
catalog views (star schema included) and what the UI shows."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from sentinel_assets.definitions import defs
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.sensors import check_failure_alerts
from sentinel_assets.paths import CATALOG_FILE
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.ingest import ingest_file
from sentinel_assets.telemetry.simulate import SimulationPlan, simulate

pytestmark = pytest.mark.slow
DAY, REGION = "2026-10-31", "us-east"


@pytest.fixture
def simulated_lake(sentinel_home):
    plan = SimulationPlan(days=2, devices_per_region=40, readings_per_day=48, regions=(REGION,))
    for path in simulate(sentinel_home / "landing", plan):
        ingest_file(path, sentinel_home / "lake")
    return sentinel_home


def refresh_day(home, instance, run_config=None) -> dg.ExecuteInProcessResult:
    """The time-series job for the simulated day, as the UI would launch it."""
    return (
        defs()
        .resolve_job_def("telemetry_timeseries_refresh")
        .execute_in_process(
            partition_key=lake.partition_key(DAY, REGION),
            instance=instance,
            resources=build_resources(home),
            run_config=run_config,
        )
    )


def test_a_simulated_day_materializes_with_every_check_passing(simulated_lake, instance):
    home = simulated_lake
    day = refresh_day(home, instance)
    assert day.success
    evaluations = {e.asset_check_key.to_user_string(): e for e in day.get_asset_check_evaluations()}
    assert set(evaluations) == {
        "device_timeseries:contract",
        "device_timeseries:no_interpolation_across_long_gaps",
        "device_timeseries:interpolated_between_neighbours",
        "telemetry_anomalies:contract",
        "daily_device_stats:contract",
        "daily_region_stats:contract",
        "daily_region_stats:anomaly_rate_within_limit",
    }
    blocking = {k: e for k, e in evaluations.items() if "anomaly_rate" not in k}
    assert all(e.passed for e in blocking.values()), [
        k for k, e in blocking.items() if not e.passed
    ]
    shown = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in day.get_asset_materialization_events()
    }
    series = shown["device_timeseries"]
    assert 0 < series["coverage"].value < 1
    assert 0 < series["interpolated_share"].value < 1
    assert "data:image/png;base64," in series["device_day_chart"].value
    assert "anomalies_by_rule" in shown["telemetry_anomalies"]

    star = (
        defs()
        .resolve_job_def("star_schema_rebuild")
        .execute_in_process(instance=instance, resources=build_resources(home))
    )
    assert star.success
    assert all(e.passed for e in star.get_asset_check_evaluations())
    with duckdb.connect(str(home / CATALOG_FILE), read_only=True) as conn:
        [(slots, devices)] = conn.sql(
            "SELECT count(*), count(DISTINCT device_id) FROM device_timeseries"
        ).fetchall()
        [(facts,)] = conn.sql("SELECT count(*) FROM fact_telemetry").fetchall()
        [(orphans,)] = conn.sql(
            "SELECT count(*) FROM fact_telemetry f LEFT JOIN dim_device d USING (device_key) "
            "WHERE d.device_key IS NULL"
        ).fetchall()
    assert slots == devices * 96 and 30 <= devices <= 40
    assert facts > 0 and orphans == 0


def alert_rows(home) -> list[tuple]:
    """(asset, partition, check, severity) of every row of the warehouse's alerts table."""
    with duckdb.connect(str(home / CATALOG_FILE), read_only=True) as conn:
        if not conn.sql("SELECT 1 FROM duckdb_tables() WHERE table_name = 'alerts'").fetchall():
            return []
        return conn.sql(
            "SELECT asset, partition, check_name, severity FROM alerts ORDER BY raised_at"
        ).fetchall()


def test_a_region_over_the_anomaly_rate_ends_in_an_alert_row_and_one_at_it_does_not(
    simulated_lake, instance
):
    """The alert path of every other check: the non-blocking anomaly_rate_within_limit fails,
    its run still writes the tables, and the check_failure_alerts sensor records the alert."""
    home = simulated_lake
    resources = build_resources(home)
    cursor = None

    def refresh_and_tick(max_anomaly_rate: float) -> tuple[dg.AssetCheckEvaluation, list]:
        nonlocal cursor
        # Every reading is hot on a low battery: every device has an episode (rate 1.0).
        settings = {"max_anomaly_rate": max_anomaly_rate, "hot_temperature_c": -40.0,
                    "low_battery_pct": 100.0}  # fmt: skip
        run = refresh_day(home, instance, {"resources": {"timeseries": {"config": {
            "settings": settings}}}})  # fmt: skip
        assert run.success  # not blocking: the tables are written either way
        [rate] = [
            e
            for e in run.get_asset_check_evaluations()
            if e.check_name == "anomaly_rate_within_limit"
        ]
        assert rate.metadata["anomaly_rate"].value == 1.0
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"catalog": resources["catalog"]}
        )
        cursor = check_failure_alerts(context).cursor
        return rate, alert_rows(home)

    at_limit, rows = refresh_and_tick(1.0)
    assert at_limit.passed and rows == []
    over, rows = refresh_and_tick(0.5)
    assert not over.passed and over.metadata["regions_over_limit"].value == 1
    assert rows == [
        ("daily_region_stats", lake.partition_key(DAY, REGION), "anomaly_rate_within_limit",
         "WARN")
    ]  # fmt: skip
