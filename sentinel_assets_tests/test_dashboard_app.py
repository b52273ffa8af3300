"""The Streamlit dashboard, headless (`streamlit.testing.v1.AppTest`), on a materialized demo
warehouse; and "Launch with this policy" against a real dagster-webserver.

Needs Streamlit, which lives in the dashboard's environment: `make test` runs this file with
`.venv-dashboard/bin/pytest`; in `.venv` it is skipped.
"""

from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import polars as pl
import pytest
import yaml
from dagster import DagsterRunStatus

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import ACTIONS
from sentinel_assets.defs.config import SimulationSettings
from sentinel_assets.recovery import RecoveryPolicy, action_counts, decide_recovery
from sentinel_assets.timeseries import store
from sentinel_assets.timeseries.anomalies import RULES, anomaly_episodes
from sentinel_assets.timeseries.readings import partition_readings
from sentinel_assets.timeseries.settings import TimeseriesSettings
from sentinel_assets_tests.conftest import DEMO_DAY, DEMO_REGION
from sentinel_assets_tests.landing_daemon import Landing
from sentinel_assets_tests.telemetry_helpers import json_line, v2
from sentinel_assets_tests.webserver import DagsterUI, running_webserver, write_test_instance_yaml

pytest.importorskip("streamlit", reason="Streamlit is in .venv-dashboard (make dashboard-install)")
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "sentinel_assets" / "dashboard" / "app.py"
REGIONS = ("af-south", "eu-west")


def open_app(
    monkeypatch: pytest.MonkeyPatch, home: Path, view: str | None = None, **params: str
) -> AppTest:
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    monkeypatch.delenv("SENTINEL_AS_OF", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    if view:
        at.query_params["view"] = view
    for name, value in params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def date_of(text: str) -> date:
    return date.fromisoformat(text)


def shard(home: Path, asset: str, region: str) -> pl.DataFrame:
    return warehouse.read_partition(warehouse.partition_file(home / "tables", asset, region))


def fleet(home: Path) -> pl.DataFrame:
    return pl.concat([shard(home, "sanitized_fleet", region) for region in REGIONS])


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number(text: str) -> int:
    return int(text.replace(",", ""))


def table_with(at: AppTest, column: str) -> pl.DataFrame:
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return pl.from_pandas(frame)


def test_the_overview_shows_the_materialized_regions(monkeypatch, demo_warehouse):
    at = open_app(monkeypatch, demo_warehouse)
    assert not at.error, [e.value for e in at.error]
    shown = metrics(at)
    assert number(shown["Devices (sanitized)"]) == fleet(demo_warehouse).height
    quarantined = sum(shard(demo_warehouse, "quarantine", r).height for r in REGIONS)
    assert number(shown["Quarantined records"]) == quarantined
    halted = [r for r in REGIONS if shard(demo_warehouse, "campaign_status", r)["halted"][0]]
    assert halted == ["af-south"]
    assert number(shown["Campaigns halted"]) == len(halted)
    assert any("Campaign halted in af-south" in w.value for w in at.warning)
    assert any("data last materialized" in c.value for c in at.caption)
    regions = table_with(at, "quarantine_rate")
    assert regions["region"].to_list() == list(REGIONS)
    assert regions["campaign"].to_list() == ["halted", "running"]
    assert regions["materialized_at"].null_count() == 0
    assert table_with(at, "share_of_region_failures").height > 0


@pytest.mark.parametrize(("view", "shows"), [("triage", "Records matching"), ("whatif", "hold")])
def test_each_view_opens_from_its_url(monkeypatch, demo_warehouse, view, shows):
    at = open_app(monkeypatch, demo_warehouse, view=view)
    assert at.sidebar.radio(key="view").value == view
    assert shows in metrics(at)


def test_every_dagster_asset_link_opens_the_view_of_that_asset(
    monkeypatch, demo_warehouse, definitions
):
    graph = definitions.resolve_asset_graph()
    links = {
        key.to_user_string(): graph.get(key).metadata["dashboard"].url
        for key in graph.get_all_asset_keys()
        if "dashboard" in graph.get(key).metadata
    }
    assert {"quarantine", "recovery_decisions", "regional_rank", "dead_letters"} <= set(links)
    assert {"device_timeseries", "telemetry_anomalies", "daily_region_stats"} <= set(links)
    views = {asset: parse_qs(urlsplit(url).query)["view"][0] for asset, url in links.items()}
    assert views["quarantine"] == "triage" and views["recovery_decisions"] == "whatif"
    assert views["dead_letters"] == "upload"
    assert views["device_timeseries"] == views["telemetry_anomalies"] == "device"
    assert parse_qs(urlsplit(links["daily_region_stats"]).query)["tab"] == ["anomalies"]
    for view in set(views.values()):
        at = open_app(monkeypatch, demo_warehouse, view=view)
        assert at.sidebar.radio(key="view").value == view
        assert not at.error


def test_moving_a_guard_slider_changes_the_counts_exactly_as_decide_recovery_does(
    monkeypatch, demo_warehouse
):
    at = open_app(monkeypatch, demo_warehouse, view="whatif")
    materialized = pl.concat([shard(demo_warehouse, "recovery_decisions", r) for r in REGIONS])
    at_default = {a: number(metrics(at)[a]) for a in ACTIONS}
    assert at_default == action_counts(materialized)
    assert number(metrics(at)["devices whose action changes"]) == 0

    at.slider(key="thr_min_rollback_battery_pct").set_value(55.0).run()
    assert not at.exception and not at.error

    policy = RecoveryPolicy(min_rollback_battery_pct=55.0)
    expected = decide_recovery(
        fleet(demo_warehouse), policy, as_of=SimulationSettings().as_of_utc()
    )
    shown = metrics(at)
    assert {a: number(shown[a]) for a in ACTIONS} == action_counts(expected)
    assert shown != at_default
    per_region = table_with(at, "retry change")
    for region in REGIONS:
        [row] = per_region.filter(pl.col("region") == region).to_dicts()
        counts = action_counts(expected.filter(pl.col("region") == region))
        before = action_counts(materialized.filter(pl.col("region") == region))
        assert {a: row[a] for a in ACTIONS} == counts, region
        assert {a: row[f"{a} change"] for a in ACTIONS} == {
            a: counts[a] - before[a] for a in ACTIONS
        }, region
    changed = number(shown["devices whose action changes"])
    joined = materialized.join(expected, on=["region", "record_id"], how="full", coalesce=True)
    assert changed == joined.filter(pl.col("action") != pl.col("action_right")).height > 0


def test_raising_the_abort_threshold_resumes_the_halted_region(monkeypatch, demo_warehouse):
    at = open_app(monkeypatch, demo_warehouse, view="whatif")
    at.slider(key="thr_abort_failure_rate").set_value(0.9).run()
    assert [s.value for s in at.success] == ["Would resume: af-south."]
    assert number(metrics(at)["hold"]) == 0


def test_an_invalid_policy_is_explained_not_raised(monkeypatch, demo_warehouse):
    at = open_app(monkeypatch, demo_warehouse, view="whatif")
    at.number_input(key="thr_retry_backoff_max_minutes").set_value(5.0).run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("This policy cannot be applied")
    assert "retry_backoff_max_minutes" in error.value


def test_the_triage_queue_filters_by_region_and_reason_code(monkeypatch, demo_warehouse):
    at = open_app(monkeypatch, demo_warehouse, view="triage")
    quarantine = shard(demo_warehouse, "quarantine", "eu-west")
    code = quarantine["reasons"].explode().value_counts(sort=True)["reasons"][0]
    at.multiselect(key="triage_region").set_value(["eu-west"]).run()
    at.multiselect(key="triage_reason").set_value([code]).run()
    expected = quarantine.filter(pl.col("reasons").list.contains(code))
    assert number(metrics(at)["Records matching"]) == expected.height > 0
    shown = table_with(at, "reasons")
    assert shown["record_id"].to_list() == expected["record_id"].to_list()
    assert all(code in reasons for reasons in shown["reasons"])


@pytest.mark.parametrize("view", ["overview", "triage", "whatif", "device"])
def test_a_bad_warehouse_path_shows_a_clear_message_not_a_traceback(monkeypatch, tmp_path, view):
    at = open_app(monkeypatch, tmp_path / "nowhere", view=view)
    [error] = at.error
    assert error.value.startswith(f"No warehouse at {tmp_path / 'nowhere' / 'warehouse.duckdb'}")
    assert "make demo" in error.value


# --- Device drill-down and the anomaly what-if, over the demo day's time series ----------


def partition(home: Path, table: str) -> pl.DataFrame:
    return store.read_partition(home / "tables", table, DEMO_DAY, DEMO_REGION)


def mixed_device(home: Path) -> str:
    """A device whose day has measured, interpolated and outage slots, and most episodes."""
    stats = partition(home, "daily_device_stats").filter(
        pl.col("slots_measured") > 0, pl.col("slots_interpolated") > 0, pl.col("slots_outage") > 0
    )
    return stats.sort(["anomaly_episodes", "device_id"], descending=[True, False])["device_id"][0]


def test_the_drill_down_shows_a_devices_day_as_materialized(monkeypatch, demo_warehouse):
    device = mixed_device(demo_warehouse)
    at = open_app(
        monkeypatch, demo_warehouse, "device", region=DEMO_REGION, date=DEMO_DAY, device=device
    )
    assert not at.error and not at.info, [m.value for m in [*at.error, *at.info]]
    assert at.selectbox(key="device_id").value == device
    series = partition(demo_warehouse, "device_timeseries").filter(pl.col("device_id") == device)
    episodes = partition(demo_warehouse, "telemetry_anomalies").filter(
        pl.col("device_id") == device
    )
    shown = metrics(at)
    assert number(shown["Measured slots"]) == series["is_measured"].sum() > 0
    assert number(shown["Interpolated slots"]) == series["is_interpolated"].sum() > 0
    assert number(shown["Outage slots"]) == series["is_outage"].sum() > 0
    assert number(shown["Anomaly episodes"]) == episodes.height
    [chart] = at.get("vega_lite_chart")
    assert "vconcat" in chart.proto.spec
    if episodes.height:
        assert table_with(at, "episode_start_ts").height == episodes.height


def test_the_drill_down_finds_a_device_by_part_of_its_id(monkeypatch, demo_warehouse):
    at = open_app(monkeypatch, demo_warehouse, "device")
    devices = partition(demo_warehouse, "daily_device_stats")["device_id"]
    at.text_input(key="device_search").set_value("0001").run()
    offered = [option.split(" ")[0] for option in at.selectbox(key="device_id").options]
    assert sorted(offered) == sorted(d for d in devices if "0001" in d)
    assert at.query_params["device"] == at.selectbox(key="device_id").value
    at.text_input(key="device_search").set_value("no-such-device").run()
    assert not at.exception and not at.error
    assert any("has an id containing 'no-such-device'" in i.value for i in at.info)


def test_a_device_without_data_that_day_gets_a_message(monkeypatch, demo_warehouse):
    at = open_app(
        monkeypatch, demo_warehouse, "device", region=DEMO_REGION, date=DEMO_DAY, device="SN-X-1"
    )
    assert not at.error
    [info] = at.info
    assert info.value.startswith(f"Device SN-X-1 has no time series in {DEMO_REGION}")


@pytest.mark.parametrize("view", ["device", "whatif"])
def test_missing_time_series_tables_show_a_message_not_a_traceback(monkeypatch, tmp_path, view):
    home = tmp_path / "fleet-only"
    home.mkdir()
    duckdb.connect(str(paths.catalog_path(home))).close()  # a warehouse with no table yet
    at = open_app(monkeypatch, home, view)
    messages = [i.value for i in at.info]
    assert any("time series are not materialized" in m and "telemetry_timeseries_refresh" in m
               for m in messages), messages  # fmt: skip


def rule_counts(episodes: pl.DataFrame) -> dict[str, int]:
    found = dict(episodes.group_by("rule").len().iter_rows())
    return {rule: found.get(rule, 0) for rule in RULES}


def test_moving_an_anomaly_threshold_changes_the_counts_exactly_as_anomaly_episodes_does(
    monkeypatch, demo_warehouse
):
    at = open_app(monkeypatch, demo_warehouse, "whatif", tab="anomalies")
    materialized = partition(demo_warehouse, "telemetry_anomalies")
    assert {r: number(metrics(at)[r]) for r in RULES} == rule_counts(materialized)
    assert number(metrics(at)["device rules changed"]) == 0

    at.slider(key="anom_signal_collapse_dbm").set_value(-100.0).run()
    assert not at.exception and not at.error
    readings = partition_readings(paths.lake_root(demo_warehouse), date_of(DEMO_DAY), DEMO_REGION)
    settings = TimeseriesSettings(signal_collapse_dbm=-100.0)
    expected = anomaly_episodes(readings, date_of(DEMO_DAY), settings).collect()
    shown = {r: number(metrics(at)[r]) for r in RULES}
    assert shown == rule_counts(expected) != rule_counts(materialized)
    [row] = table_with(at, "signal_collapse change").to_dicts()
    before = rule_counts(materialized)
    assert {r: row[f"{r} change"] for r in RULES} == {r: shown[r] - before[r] for r in RULES}
    keys = ["device_id", "rule"]
    per_device = (
        materialized.group_by(keys).len().join(
            expected.group_by(keys).len(), on=keys, how="full", coalesce=True
        ).filter(pl.col("len").fill_null(0) != pl.col("len_right").fill_null(0))
    )  # fmt: skip
    assert number(metrics(at)["device rules changed"]) == per_device.height > 0
    changes = table_with(at, "episodes_after")
    assert changes.select(keys).sort(keys).rows() == per_device.select(keys).sort(keys).rows()


def test_the_alert_rate_slider_says_which_regions_would_alert(monkeypatch, demo_warehouse):
    stats = partition(demo_warehouse, "daily_region_stats").to_dicts()[0]
    at = open_app(monkeypatch, demo_warehouse, "whatif", tab="anomalies")
    alerting_now = stats["anomaly_rate"] > stats["max_anomaly_rate"]
    # A limit on the other side of the region's rate flips its verdict.
    limit = 1.0 if alerting_now else 0.0
    at.slider(key="anom_max_anomaly_rate").set_value(limit).run()
    if alerting_now:
        assert [s.value for s in at.success] == [f"Would stop alerting: {DEMO_REGION}."]
    else:
        assert stats["anomaly_rate"] > 0, "the demo day needs an episode"
        assert any(f": {DEMO_REGION}." in e.value for e in at.error)


# --- Upload: into the landing zone, ingested by the landing sensor, result on the page ----


def test_an_uploaded_file_is_ingested_by_the_landing_sensor_and_its_result_shown(
    monkeypatch, sentinel_home, instance
):
    records = [json_line(v2()), json_line(v2(retry_count=2)), "{broken", json_line(v2())]
    content = "".join(f"{line}\n" for line in records).encode()
    at = open_app(monkeypatch, sentinel_home, view="upload")  # no warehouse needed
    assert not at.error
    at.file_uploader(key="upload_file").set_value(("gateway-3.jsonl", content, "text/plain"))
    at.run()
    assert not at.exception and not at.error
    [landed] = (sentinel_home / "landing").iterdir()
    assert landed.name == "gateway-3.jsonl" and landed.read_bytes() == content
    assert any("Waiting for the landing sensor" in i.value for i in at.info)

    daemon = Landing(sentinel_home, instance)
    [run] = daemon.drain()  # the sensor claims the file and its ingestion run succeeds
    at.run()
    assert not at.info
    assert {k: number(v) for k, v in metrics(at).items()} == {
        "Events accepted": 2,
        "Duplicates dropped": 1,
        "Dead letters": 1,
    }
    letters = table_with(at, "line_number")
    assert letters.select("line_number", "reason").rows() == [(3, "json:malformed")]
    batch = run.dagster_run.tags["dagster/partition"]  # the dead_letters partition ingested
    assert any(f"batch `{batch}`" in m.value for m in at.markdown)


def test_a_name_a_gateway_would_not_land_is_refused_on_upload(monkeypatch, sentinel_home):
    at = open_app(monkeypatch, sentinel_home, view="upload")
    at.file_uploader(key="upload_file").set_value((".hidden.csv", b"a,b\n", "text/csv"))
    at.run()
    [error] = at.error
    assert "not a plain file name" in error.value
    assert not (sentinel_home / "landing").exists()


# --- "Launch with this policy" against a real webserver ----------------------------------


RUN_QUERY = """
query DashboardLaunchedRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { jobName runConfigYaml tags { key value } }
  }
}
"""


def test_launch_with_this_policy_starts_runs_with_the_chosen_thresholds(
    monkeypatch, demo_warehouse, tmp_path
):
    dagster_home = tmp_path / "dagster"
    write_test_instance_yaml(dagster_home)
    run_home = tmp_path / "runs"
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "SENTINEL_HOME": str(run_home),
        "SENTINEL_DEVICES_PER_REGION": "400",
        "PYTHONPATH": str(REPO),
    }
    with running_webserver(REPO / "workspace.yaml", env, timeout=180) as base_url:
        at = open_app(monkeypatch, demo_warehouse, view="whatif")
        at.slider(key="thr_min_rollback_battery_pct").set_value(42.0)
        at.slider(key="thr_abort_failure_rate").set_value(0.45)
        at.number_input(key="thr_abort_min_attempted").set_value(50)
        at.run()
        at.multiselect(key="launch_regions").set_value(["eu-west"])
        at.text_input(key="launch_ui_url").set_value(base_url)
        at.button(key="launch").click().run()
        assert not at.error, [e.value for e in at.error]
        [(region, run_id, url)] = at.session_state["launched"]
        assert (region, url) == ("eu-west", f"{base_url}/runs/{run_id}")
        assert any(run_id[:8] in m.value and url in m.value for m in at.markdown)

        ui = DagsterUI(base_url)
        run = ui.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["jobName"] == "fleet_refresh"
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == "eu-west"
        recovery = yaml.safe_load(run["runConfigYaml"])["resources"]["settings"]["config"][
            "recovery"
        ]
        assert recovery["min_rollback_battery_pct"] == 42.0
        assert recovery["abort_failure_rate"] == 0.45
        assert recovery["abort_min_attempted"] == 50
        assert recovery["max_retries"] == RecoveryPolicy().max_retries

        status = ui.wait_for_run(run_id, timeout=300)
        assert status is DagsterRunStatus.SUCCESS, ui.run_error_messages(run_id)

        # The anomaly thresholds go to the time-series job of the day's partition.
        at = open_app(monkeypatch, demo_warehouse, view="whatif", tab="anomalies")
        at.slider(key="anom_signal_collapse_dbm").set_value(-100.0).run()
        at.multiselect(key="anomaly_launch_regions").set_value([DEMO_REGION])
        at.text_input(key="anomaly_launch_ui_url").set_value(base_url)
        at.button(key="anomaly_launch").click().run()
        assert not at.error, [e.value for e in at.error]
        [(region, ts_run_id, _)] = at.session_state["anomaly_launched"]
        run = ui.graphql(RUN_QUERY, {"runId": ts_run_id})["runOrError"]
        assert (region, run["jobName"]) == (DEMO_REGION, "telemetry_timeseries_refresh")
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == f"{DEMO_DAY}|{DEMO_REGION}"
        settings = yaml.safe_load(run["runConfigYaml"])["resources"]["timeseries"]["config"][
            "settings"
        ]
        assert TimeseriesSettings(**settings) == TimeseriesSettings(signal_collapse_dbm=-100.0)
        status = ui.wait_for_run(ts_run_id, timeout=300)
        assert status is DagsterRunStatus.SUCCESS, ui.run_error_messages(ts_run_id)
    # The run applied the policy: its campaign status carries the chosen abort rule.
    campaign = shard(run_home, "campaign_status", "eu-west")
    assert campaign["abort_failure_rate"].to_list() == [0.45]
    assert campaign["abort_min_attempted"].to_list() == [50]
