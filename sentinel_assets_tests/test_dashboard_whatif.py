"""The dashboard's domain functions (no Streamlit): the what-if over `decide_recovery`, the
policy the sliders build and send to Dagster, and read-only warehouse loading."""

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sentinel_assets import warehouse
from sentinel_assets.contracts import ACTIONS
from sentinel_assets.dashboard import data, launch, whatif
from sentinel_assets.defs.config import RecoverySettings, SimulationSettings
from sentinel_assets.recovery import RecoveryPolicy, campaign_health, decide_recovery

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
