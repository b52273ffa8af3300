"""The dashboard's domain functions (no Streamlit): the what-if over `decide_recovery`, the
policy the sliders build and send to Dagster, and read-only warehouse loading."""

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_assets import warehouse
from sentinel_assets.contracts import ACTIONS
from sentinel_assets.dashboard import data, launch, whatif
from sentinel_assets.defs.config import RecoverySettings, SimulationSettings
from sentinel_assets.recovery import RecoveryPolicy, campaign_health, decide_recovery
from sentinel_assets.telemetry import lake
from sentinel_assets.timeseries import store
from sentinel_assets.timeseries.anomalies import RULES, anomaly_episodes
from sentinel_assets.timeseries.readings import partition_readings
from sentinel_assets.timeseries.settings import TimeseriesSettings
from sentinel_assets_tests.conftest import DEMO_DAY, DEMO_REGION

KEY = ["region", "record_id"]


def counts_by_region(decisions: pl.DataFrame) -> dict[tuple[str, str], int]:
    rows = decisions.group_by("region", "action").len().iter_rows()
    return {(region, action): n for region, action, n in rows}


@pytest.fixture(scope="module")
def materialized(fleet: pl.DataFrame, as_of: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decisions and campaign status as the pipeline stores them at the default policy."""
    policy = RecoveryPolicy()
    return decide_recovery(fleet, policy, as_of=as_of), campaign_health(fleet, policy)


def test_the_policy_it_was_materialized_with_changes_nothing(fleet, materialized, as_of):
    decisions, campaigns = materialized
    result = whatif.what_if(fleet, decisions, campaigns, RecoveryPolicy(), as_of=as_of)
    assert result.changes.is_empty()
    assert result.counts["change"].abs().sum() == 0
    assert result.counts["what_if"].sum() == decisions.height
    assert result.campaigns["verdict"].to_list() == ["stays running"]


@pytest.mark.parametrize(
    "values",
    [
        {"min_rollback_battery_pct": 60.0},
        {"min_rollback_voltage_v": 3.9, "max_rollback_temperature_c": 40.0},
        {"max_retries": 1, "min_signal_dbm": -90.0},
        {"retriable_failure_kinds": ["download_timeout"], "stale_after_hours": 24.0},
    ],
)
def test_a_changed_policy_counts_and_lists_exactly_what_decide_recovery_changes(
    fleet, materialized, as_of, values
):
    decisions, campaigns = materialized
    policy = whatif.make_policy(values)
    result = whatif.what_if(fleet, decisions, campaigns, policy, as_of=as_of)

    expected = decide_recovery(fleet, policy, as_of=as_of)
    assert result.decisions.equals(expected)
    after, before = counts_by_region(expected), counts_by_region(decisions)
    for row in result.counts.iter_rows(named=True):
        pair = (row["region"], row["action"])
        assert row["what_if"] == after.get(pair, 0), pair
        assert row["materialized"] == before.get(pair, 0), pair
        assert row["change"] == after.get(pair, 0) - before.get(pair, 0), pair

    joined = decisions.join(expected, on=KEY, how="full", coalesce=True, suffix="_after")
    differs = joined.filter(
        pl.col("action").fill_null("none") != pl.col("action_after").fill_null("none")
    )
    assert result.changes.height == differs.height > 0
    assert result.changes.select(KEY).equals(differs.select(KEY).sort(KEY))
    assert result.changes["device_id"].null_count() == 0


def test_the_wide_table_has_a_count_and_a_change_per_action(fleet, materialized, as_of):
    decisions, campaigns = materialized
    policy = whatif.make_policy({"min_rollback_battery_pct": 60.0})
    wide = whatif.what_if(fleet, decisions, campaigns, policy, as_of=as_of).wide_counts()
    expected = counts_by_region(decide_recovery(fleet, policy, as_of=as_of))
    before = counts_by_region(decisions)
    [row] = wide.to_dicts()
    for action in ACTIONS:
        pair = (row["region"], action)
        assert row[action] == expected.get(pair, 0)
        assert row[f"{action} change"] == expected.get(pair, 0) - before.get(pair, 0)


def test_a_lower_abort_threshold_halts_the_region_and_holds_its_pending_updates(
    fleet, materialized, as_of
):
    decisions, campaigns = materialized
    rate = campaigns["failure_rate"][0]
    policy = whatif.make_policy({"abort_failure_rate": round(rate - 0.01, 2)})
    result = whatif.what_if(fleet, decisions, campaigns, policy, as_of=as_of)
    assert result.halting == ["eu-west"] and result.resuming == []
    pending = fleet.filter(pl.col("update_status") == "pending").height
    held = result.counts.filter(pl.col("action") == "hold")["what_if"].sum()
    assert held >= pending > 0
    newly_held = result.changes.filter(pl.col("action_before") == "none")
    assert set(newly_held["action_after"]) == {"hold"}
    assert newly_held.height == pending


def test_a_halted_region_resumes_when_the_threshold_is_raised(fleet, as_of):
    halted_policy = whatif.make_policy({"abort_failure_rate": 0.05})
    decisions = decide_recovery(fleet, halted_policy, as_of=as_of)
    campaigns = campaign_health(fleet, halted_policy)
    result = whatif.what_if(fleet, decisions, campaigns, RecoveryPolicy(), as_of=as_of)
    assert result.resuming == ["eu-west"]
    released = result.changes.filter(pl.col("action_after") == "none")
    assert set(released["action_before"]) == {"hold"}
    assert set(released["update_status"]) == {"pending"}


def test_every_numeric_field_of_the_policy_has_a_control_within_what_the_policy_accepts():
    defaults = whatif.policy_values(RecoveryPolicy())
    numeric = {name for name, value in defaults.items() if isinstance(value, int | float)}
    names = [t.name for t in whatif.THRESHOLDS]
    assert set(names) == numeric and len(names) == len(set(names))
    for t in whatif.THRESHOLDS:
        assert t.low <= defaults[t.name] <= t.high, t.name
        for edge in (t.low, t.high):
            values = {t.name: edge}
            if t.name == "retry_backoff_minutes":  # must stay <= the cap
                values["retry_backoff_max_minutes"] = max(edge, defaults[t.name])
            if t.name == "retry_backoff_max_minutes":
                values["retry_backoff_minutes"] = min(edge, defaults["retry_backoff_minutes"])
            assert getattr(whatif.make_policy(values), t.name) == edge


def test_an_invalid_or_unknown_value_is_refused_with_its_name():
    with pytest.raises(ValueError, match="min_rollback_battery_pct"):
        whatif.make_policy({"min_rollback_battery_pct": 120})
    with pytest.raises(ValueError, match="gremlins"):
        whatif.make_policy({"gremlins": 1})


def test_the_launch_run_config_is_the_policy_the_pipeline_rebuilds():
    policy = whatif.make_policy(
        {"min_rollback_battery_pct": 45.0, "max_retries": 5, "abort_failure_rate": 0.4}
    )
    config = launch.run_config(policy)
    recovery = config["resources"]["settings"]["config"]["recovery"]
    assert RecoveryPolicy(**RecoverySettings(**recovery).model_dump()) == policy
    assert launch.run_url("http://ui:3000/", "abc") == "http://ui:3000/runs/abc"


def test_the_policy_fields_are_the_ones_the_run_config_accepts():
    assert set(whatif.policy_field_names()) == set(RecoverySettings.model_fields)


def test_the_dashboard_decides_at_the_pipelines_default_snapshot(monkeypatch):
    monkeypatch.delenv("SENTINEL_AS_OF", raising=False)
    assert data.default_as_of() == SimulationSettings().as_of_utc()
    monkeypatch.setenv("SENTINEL_AS_OF", "2026-12-01T00:00")
    with pytest.raises(data.WarehouseError, match="UTC offset"):
        data.default_as_of()


# --- warehouse loading ------------------------------------------------------------------


def test_the_warehouse_path_follows_sentinel_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "elsewhere"))
    assert data.warehouse_path() == tmp_path / "elsewhere" / "warehouse.duckdb"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "No warehouse at"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_text("not a database"), "is not a readable DuckDB warehouse"),
    ],
)
def test_a_bad_warehouse_path_gets_one_clear_sentence(tmp_path, make, message):
    path = tmp_path / "warehouse.duckdb"
    make(path)
    with pytest.raises(data.WarehouseError, match=message) as error:
        data.region_overview(path)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_a_missing_table_names_the_job_that_makes_it(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(data.WarehouseError, match=r"no `campaign_status` table.*fleet_refresh"):
        data.region_overview(path)
    with pytest.raises(data.WarehouseError, match=r"no `failure_clusters` table.*regional_report"):
        data.worst_upgrade_paths(path)


def test_a_read_never_holds_the_file_so_the_pipeline_can_write_right_after(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE campaign_status AS SELECT 'eu-west' AS region")
    assert data.read_table(path, "campaign_status")["region"].to_list() == ["eu-west"]
    with duckdb.connect(str(path)) as writer:  # would fail on a lock if the read kept it
        writer.execute("INSERT INTO campaign_status VALUES ('us-east')")


def test_a_writer_holding_the_lock_gets_a_retry_then_a_clear_message(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); "
            "print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(data.WarehouseError, match="stayed locked by a writer"),
            data.read_only(path, lock_wait=0.5),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_read_during_a_short_write_waits_for_it_and_succeeds(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE campaign_status AS SELECT 'eu-west' AS region")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); "
            "print('locked', flush=True); time.sleep(1.5); c.close(); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert data.read_table(path, "campaign_status")["region"].to_list() == ["eu-west"]
    finally:
        holder.kill()
        holder.wait()


def test_triage_filters_by_region_reason_code_and_column():
    records = pl.DataFrame(
        {
            "region_shard": ["eu-west", "eu-west", "us-east"],
            "reasons": [
                ["battery_pct:out_of_range"],
                ["device_id:duplicate", "battery_pct:missing"],
                ["signal_dbm:not_a_number"],
            ],
            "record_id": [1, 2, 3],
        }
    )
    ids = lambda frame: frame["record_id"].to_list()  # noqa: E731
    assert ids(data.filter_quarantine(records)) == [1, 2, 3]
    assert ids(data.filter_quarantine(records, regions=["eu-west"])) == [1, 2]
    assert ids(data.filter_quarantine(records, reason_codes=["device_id:duplicate"])) == [2]
    assert ids(data.filter_quarantine(records, columns=["battery_pct"])) == [1, 2]
    assert ids(data.filter_quarantine(records, ["us-east"], columns=["battery_pct"])) == []
    csv = data.to_csv(data.filter_quarantine(records, reason_codes=["device_id:duplicate"]))
    assert csv.splitlines() == [
        "region_shard,reasons,record_id",
        "eu-west,device_id:duplicate|battery_pct:missing,2",
    ]


@pytest.mark.slow
def test_the_views_read_the_materialized_warehouse(demo_warehouse: Path):
    path = demo_warehouse / "warehouse.duckdb"
    tables = demo_warehouse / "tables"
    shard = lambda asset, region: warehouse.read_partition(  # noqa: E731
        warehouse.partition_file(tables, asset, region)
    )
    overview = data.region_overview(path)
    assert overview["region"].to_list() == ["af-south", "eu-west"]
    for row in overview.iter_rows(named=True):
        region = row["region"]
        status = shard("campaign_status", region)
        assert row["devices"] == shard("sanitized_fleet", region).height
        assert row["quarantined"] == shard("quarantine", region).height
        assert row["campaign"] == ("halted" if status["halted"][0] else "running")
        outcomes = shard("recovery_outcomes", region)
        for status_after, n in outcomes.group_by("status_after").len().iter_rows():
            assert row[f"after_{status_after}"] == n
    assert overview.filter(pl.col("region") == "af-south")["campaign"].item() == "halted"
    inputs = data.whatif_inputs(path)
    fleet = pl.concat([shard("sanitized_fleet", r) for r in ("af-south", "eu-west")])
    assert inputs.fleet.sort(KEY).equals(fleet.sort(KEY))
    written = data.last_materialized(path)
    assert set(written.filter(pl.col("asset") == "sanitized_fleet")["region"]) == {
        "af-south",
        "eu-west",
    }


def test_an_asset_links_to_the_dashboard_where_it_is_served(monkeypatch):
    from sentinel_assets.defs.metadata import dashboard_link

    monkeypatch.delenv("SENTINEL_DASHBOARD_URL", raising=False)
    assert dashboard_link("quarantine")["dashboard"].url == "http://127.0.0.1:8501/?view=triage"
    monkeypatch.setenv("SENTINEL_DASHBOARD_URL", "https://ops.example/fleet/")
    assert dashboard_link("regional_rank")["dashboard"].url == (
        "https://ops.example/fleet/?view=overview"
    )


def test_the_slim_fleet_the_app_caches_decides_exactly_like_the_whole_one(fleet, as_of):
    slim = whatif.slim_fleet(fleet)
    assert set(slim.columns) < set(fleet.columns)
    for values in ({}, {"min_rollback_battery_pct": 60.0, "abort_failure_rate": 0.1}):
        policy = whatif.make_policy(values)
        assert decide_recovery(slim, policy, as_of=as_of).equals(
            decide_recovery(fleet, policy, as_of=as_of)
        )


# --- the device drill-down's data ----------------------------------------------------------

DAY = date.fromisoformat(DEMO_DAY)


def day_series(kinds: list[str], interval_minutes: int = 15) -> pl.DataFrame:
    """A device's day of slots of the given kinds (`m` measured, `i` interpolated, `o`
    outage): values NULL exactly in the outages, as `device_timeseries` has them."""
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)
    n = len(kinds)
    value = [None if k == "o" else float(i) for i, k in enumerate(kinds)]
    return pl.DataFrame(
        {
            "slot_ts": [start + timedelta(minutes=interval_minutes * i) for i in range(n)],
            "readings_in_slot": [int(k == "m") for k in kinds],
            "is_measured": [k == "m" for k in kinds],
            "is_interpolated": [k == "i" for k in kinds],
            "is_outage": [k == "o" for k in kinds],
            "gap_minutes": [None] * n,
            **dict.fromkeys(data.SERIES_VALUES, value),
        },
        schema_overrides={"slot_ts": pl.Datetime("us", "UTC"), "gap_minutes": pl.Float64},
    )


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from("mio"), min_size=96, max_size=96))
def test_chart_lines_never_bridge_an_outage_and_outage_bands_cover_exactly_the_outages(kinds):
    series = day_series(kinds)
    points = data.series_points(series)
    per_value = points.group_by("value").len()
    assert dict(per_value.iter_rows()) == (
        dict.fromkeys(data.SERIES_VALUES, kinds.count("m") + kinds.count("i"))
        if "m" in kinds or "i" in kinds
        else {}
    )
    outage_times = series.filter(pl.col("is_outage"))["slot_ts"]
    spans = points.group_by("value", "segment").agg(
        pl.col("slot_ts").min().alias("first"), pl.col("slot_ts").max().alias("last")
    )
    for first, last in spans.select("first", "last").iter_rows():
        assert not outage_times.is_between(first, last).any()
    bands = data.outage_ranges(series)
    assert bands["slots"].sum() == kinds.count("o")
    covered = series.join_where(
        bands, pl.col("slot_ts") >= pl.col("start"), pl.col("slot_ts") < pl.col("end")
    )
    assert covered["is_outage"].all() and covered.height == kinds.count("o")


def test_measured_and_interpolated_points_are_told_apart():
    points = data.series_points(day_series(["m", "i", "o", "m"] * 24))
    kinds = points.filter(pl.col("value") == "battery_pct").group_by("kind").len()
    assert dict(kinds.iter_rows()) == {"measured": 48, "interpolated": 24}
    assert data.slot_interval(day_series(["m"] * 96)) == timedelta(minutes=15)
    assert data.slot_interval(day_series(["m"] * 288, 5)) == timedelta(minutes=5)
    with pytest.raises(ValueError, match="no slots"):
        data.slot_interval(day_series([]))


def test_an_episode_of_one_reading_is_shaded_one_slot_wide():
    start = datetime(2026, 10, 31, 6, tzinfo=UTC)
    episodes = pl.DataFrame(
        {
            "rule": ["signal_collapse", "voltage_sag"],
            "episode_start_ts": [start, start],
            "episode_end_ts": [start, start + timedelta(hours=2)],
            "readings": [1, 9],
        }
    )
    ranges = data.episode_ranges(episodes, timedelta(minutes=15))
    assert ranges["end"].to_list() == [start + timedelta(minutes=15), start + timedelta(hours=2)]


def test_devices_are_found_by_part_of_their_id_most_anomalous_first():
    days = pl.DataFrame(
        {
            "region": ["eu-west", "eu-west", "eu-west", "us-east"],
            "event_date": [DAY, DAY, DAY - timedelta(days=1), DAY],
            "device_id": ["SN-A-01", "SN-A-02", "SN-A-03", "SN-A-04"],
            "anomaly_episodes": [0, 3, 9, 9],
        }
    )
    found = data.find_devices(days, "eu-west", DAY, " sn-a ")
    assert found["device_id"].to_list() == ["SN-A-02", "SN-A-01"]
    assert data.find_devices(days, "eu-west", DAY, "01")["device_id"].to_list() == ["SN-A-01"]
    assert data.find_devices(days, "eu-west", DAY, ".*").is_empty()  # literal, not a pattern
    assert data.find_devices(days, "ap-north", DAY).is_empty()


def test_a_devices_day_is_read_from_the_materialized_tables(demo_warehouse):
    path = demo_warehouse / "warehouse.duckdb"
    tables = demo_warehouse / "tables"
    series = store.read_partition(tables, "device_timeseries", DEMO_DAY, DEMO_REGION)
    anomalies = store.read_partition(tables, "telemetry_anomalies", DEMO_DAY, DEMO_REGION)
    device = anomalies["device_id"][0] if anomalies.height else series["device_id"][0]
    day = data.device_day(path, DEMO_REGION, device, DAY)
    mine = series.filter(pl.col("device_id") == device).sort("slot_ts")
    assert day.series.equals(mine.select(data.SERIES_COLUMNS))
    assert day.slot_counts() == {
        k: mine[f"is_{k}"].sum() for k in ("measured", "interpolated", "outage")
    }
    assert day.episodes.height == anomalies.filter(pl.col("device_id") == device).height
    days = data.device_days(path)
    assert days.filter(pl.col("event_date") == DAY).height == series["device_id"].n_unique()
    with pytest.raises(data.WarehouseError, match="has no time series on"):
        data.device_day(path, DEMO_REGION, device, DAY + timedelta(days=1))
    with pytest.raises(data.WarehouseError, match="has no time series on"):
        data.device_day(path, DEMO_REGION, "SN-NOBODY", DAY)


def test_missing_time_series_tables_name_the_job_that_makes_them(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    for load in (data.device_days, data.anomaly_days):
        with pytest.raises(data.WarehouseError, match="telemetry_timeseries_refresh"):
            load(path)
    with pytest.raises(data.WarehouseError, match="`device_timeseries`"):
        data.device_day(path, DEMO_REGION, "SN-1", DAY)


# --- the anomaly what-if -------------------------------------------------------------------


@pytest.fixture(scope="module")
def anomaly_inputs(demo_warehouse) -> data.AnomalyInputs:
    return data.anomaly_inputs(demo_warehouse / "warehouse.duckdb", DAY)


def test_the_thresholds_it_was_materialized_with_change_nothing(anomaly_inputs, demo_warehouse):
    tables = demo_warehouse / "tables"
    materialized = store.read_partition(tables, "telemetry_anomalies", DEMO_DAY, DEMO_REGION)
    assert anomaly_inputs.anomalies.height == materialized.height
    assert anomaly_inputs.readings.equals(
        partition_readings(demo_warehouse / "lake", DAY, DEMO_REGION).collect()
    )
    result = whatif.anomaly_what_if(
        anomaly_inputs.readings,
        anomaly_inputs.anomalies,
        anomaly_inputs.region_stats,
        DAY,
        TimeseriesSettings(),
    )
    assert result.changes.is_empty()
    assert result.counts["change"].abs().sum() == 0
    assert result.counts["what_if"].sum() == materialized.height
    assert whatif.materialized_with_other_thresholds(anomaly_inputs.anomalies) == []
    [region] = result.regions.to_dicts()
    [stats] = anomaly_inputs.region_stats.to_dicts()
    assert region["anomaly_rate"] == stats["anomaly_rate"]
    assert region["verdict"] == ("stays alerting" if region["alert_before"] else "stays quiet")


@pytest.mark.parametrize(
    "values",
    [
        {"signal_collapse_dbm": -100.0},
        {"zscore_threshold": 1.5, "zscore_min_readings": 4},
        {"hot_temperature_c": 20.0, "low_battery_pct": 90.0},
        {"sag_voltage_v": 4.2, "sag_min_battery_pct": 10.0},
    ],
)
def test_changed_thresholds_count_exactly_what_anomaly_episodes_finds(anomaly_inputs, values):
    settings = whatif.make_timeseries_settings(values)
    inputs = anomaly_inputs
    result = whatif.anomaly_what_if(
        inputs.readings, inputs.anomalies, inputs.region_stats, DAY, settings
    )
    expected = anomaly_episodes(inputs.readings.lazy(), DAY, settings).collect()
    assert result.episodes.equals(expected)
    by_rule = dict(expected.group_by("rule").len().iter_rows())
    assert result.rule_totals() == {rule: by_rule.get(rule, 0) for rule in RULES}
    before = dict(inputs.anomalies.group_by("rule").len().iter_rows())
    wide = result.wide_counts().to_dicts()[0]
    for rule in RULES:
        assert wide[f"{rule} change"] == by_rule.get(rule, 0) - before.get(rule, 0)
    assert result.changes["change"].ne(0).all()
    assert result.changes["change"].sum() == expected.height - inputs.anomalies.height
    assert not result.changes.is_empty()


def test_the_alert_rate_says_which_regions_start_or_stop_alerting():
    stats = pl.DataFrame(
        {
            "region": ["a-1", "b-1", "c-1"],
            "devices": [10, 10, 10],
            "devices_with_anomaly": [0, 3, 3],
            "anomaly_rate": [0.0, 0.3, 0.3],
            "max_anomaly_rate": [0.05, 0.05, 0.5],
        }
    )
    episodes = pl.DataFrame(
        {"region": ["a-1", "a-1", "b-1"], "device_id": ["x", "y", "z"], "rule": ["r", "r", "r"]}
    )
    regions = whatif.compare_anomaly_rates(stats, episodes, max_anomaly_rate=0.15)
    assert regions.select("region", "devices_with_anomaly", "verdict").rows() == [
        ("a-1", 2, "starts alerting"),
        ("b-1", 1, "stops alerting"),
        ("c-1", 0, "stays quiet"),
    ]
    # At a zero limit any episode alerts; a region without one never does.
    at_zero = whatif.compare_anomaly_rates(stats, episodes, max_anomaly_rate=0.0)
    assert at_zero["verdict"].to_list() == ["starts alerting", "stays alerting", "stays quiet"]


def test_devices_that_gain_or_lose_episodes_are_listed_with_the_difference():
    def episodes(*rows: tuple[str, str]) -> pl.DataFrame:
        return pl.DataFrame(
            [("eu-west", d, r) for d, r in rows],
            schema=["region", "device_id", "rule"],
            orient="row",
        )

    before = episodes(("a", "voltage_sag"), ("a", "voltage_sag"), ("b", "signal_collapse"))
    after = episodes(("a", "voltage_sag"), ("b", "signal_collapse"), ("c", "hot_low_battery"))
    changes = whatif.episode_changes(before, after)
    assert changes.select("device_id", "rule", "episodes_before", "episodes_after").rows() == [
        ("a", "voltage_sag", 2, 1),
        ("c", "hot_low_battery", 0, 1),
    ]
    assert whatif.episode_changes(before, before).is_empty()


def test_every_anomaly_threshold_has_a_slider_within_what_the_settings_accept():
    names = {t.name for t in whatif.ANOMALY_THRESHOLDS}
    used = {"hot_temperature_c", "low_battery_pct", "sag_voltage_v", "sag_min_battery_pct"}
    used |= {"signal_collapse_dbm", "zscore_threshold", "zscore_window_minutes"}
    used |= {"zscore_min_readings", "max_anomaly_rate"}
    assert names == used and names <= set(TimeseriesSettings.model_fields)
    for t in whatif.ANOMALY_THRESHOLDS:
        for edge in (t.low, t.high):
            assert getattr(whatif.make_timeseries_settings({t.name: edge}), t.name) == edge


def test_bad_anomaly_thresholds_are_refused_with_their_name():
    with pytest.raises(ValueError, match="low_battery_pct"):
        whatif.make_timeseries_settings({"low_battery_pct": 120.0})
    with pytest.raises(ValueError, match="zscore_threshold"):
        whatif.make_timeseries_settings({"zscore_threshold": 0.0})
    with pytest.raises(ValueError, match="interval_minutes"):
        whatif.make_timeseries_settings({"interval_minutes": 30})  # not an anomaly threshold


def test_the_timeseries_launch_config_and_tags_are_what_the_job_accepts(definitions):
    settings = whatif.make_timeseries_settings({"signal_collapse_dbm": -100.0})
    config = launch.timeseries_run_config(settings)
    job = definitions.resolve_job_def(launch.TIMESERIES_JOB)
    assert (
        dg.validate_run_config(job, config)["resources"]["timeseries"]["config"]["settings"][
            "signal_collapse_dbm"
        ]
        == -100.0
    )
    assert TimeseriesSettings(**config["resources"]["timeseries"]["config"]["settings"]) == settings
    tags = launch.partition_tags(DAY, DEMO_REGION)
    assert tags["dagster/partition"] == lake.partition_key(DEMO_DAY, DEMO_REGION)
    assert (tags["dagster/partition/date"], tags["dagster/partition/region"]) == (
        DEMO_DAY,
        DEMO_REGION,
    )
    with pytest.raises(launch.LaunchError, match="at least one region"):
        launch.launch_timeseries("http://127.0.0.1:9", settings, DAY, [])
    with pytest.raises(launch.LaunchError, match="mars"):
        launch.launch_timeseries("http://127.0.0.1:9", settings, DAY, ["mars"])


def test_a_drill_down_link_is_made_only_for_a_valid_region_and_device_id():
    rows = pl.DataFrame(
        {
            "region": ["eu-west", "eu-west", "mars", None],
            "device_id": ["SN-EUW-00000003", "SN-EUW-3&view=x", "SN-EUW-00000003", "SN-EUW-1"],
        }
    )
    links = rows.select(data.device_link("region", "device_id", DAY))["drill-down"].to_list()
    assert links == [
        f"./?view=device&region=eu-west&device=SN-EUW-00000003&date={DEMO_DAY}",
        None,
        None,
        None,
    ]
    undated = rows.head(1).select(data.device_link("region", "device_id"))["drill-down"]
    assert undated.to_list() == ["./?view=device&region=eu-west&device=SN-EUW-00000003"]
