"""The Dagster UI as users see it: a real `dagster-webserver` over the repo's `workspace.yaml`,
driven over GraphQL (dagster-graphql's client) and looked at in headless Chromium.

One webserver serves the whole module (start-up alone takes 10-30 s on a 2-core machine) and
is stopped at the end whatever happens. It runs against a temporary SENTINEL_HOME and a
DAGSTER_HOME whose dagster.yaml is the repo's, minus the run queue: with the synchronous
coordinator, runs launched over GraphQL start without `dagster-daemon`.
Screenshots land in `test-artifacts/ui/` (git-ignored).
"""

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from dagster import DagsterRunStatus, Definitions

from sentinel_assets_tests.browser import capture, chromium_page, require_chromium
from sentinel_assets_tests.webserver import DagsterUI, running_webserver, write_test_instance_yaml

pytestmark = [pytest.mark.slow, pytest.mark.long(90)]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "ui"
REGION = "eu-west"
OTHER_REGION = "us-east"
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
REPORT_ASSETS = [
    "regional_rank",
    "failure_clusters",
    "failure_telemetry",
    "triage_queue",
    "campaign_report",
    "status_before_after",
]
TELEMETRY_ASSETS = ["mqtt_telemetry_stream", "dead_letters", "telemetry_events"]
TIMESERIES_ASSETS = [
    "device_timeseries",
    "telemetry_anomalies",
    "daily_device_stats",
    "daily_region_stats",
    "dim_device",
    "dim_date",
    "fact_telemetry",
]
# Wide and tall enough that the expanded graph fits at the zoom where nodes show their facts.
# Tall enough for the whole expanded graph (fleet, reports, telemetry and time-series groups):
# the graph renders only the nodes inside the viewport.
VIEWPORT = {"width": 2400, "height": 2600}


def ui_instance_yaml() -> str:
    """The repo's dagster.yaml without what only the daemon serves (the run queue)."""
    config: dict[str, Any] = yaml.safe_load((REPO / "dagster.yaml").read_text()) or {}
    config.pop("run_queue", None)
    config.pop("run_coordinator", None)
    config.pop("telemetry", None)  # the harness writes it
    concurrency = config.get("concurrency") or {}
    concurrency.pop("runs", None)
    return yaml.safe_dump(config, sort_keys=False)


def is_serving(base_url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(f"{base_url}/server_info", timeout=2).ok
    return False


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """A webserver for this module; `running_webserver` kills its process group on exit."""
    root = tmp_path_factory.mktemp("ui")
    dagster_home = root / "dagster"
    write_test_instance_yaml(dagster_home, ui_instance_yaml())
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "SENTINEL_HOME": str(root / "sentinel"),
        "SENTINEL_DEVICES_PER_REGION": "500",
        "PYTHONPATH": str(REPO),
    }
    with running_webserver(REPO / "workspace.yaml", env, timeout=180) as base_url:
        yield DagsterUI(base_url)
    assert not is_serving(base_url), "the webserver outlived the test module"


def run_ok(ui: DagsterUI, run_id: str) -> None:
    status = ui.wait_for_run(run_id, timeout=300)
    assert status is DagsterRunStatus.SUCCESS, ui.run_error_messages(run_id)


@pytest.fixture(scope="module")
def region_runs(ui: DagsterUI) -> dict[str, str]:
    """`fleet_refresh` for two region partitions, launched over GraphQL side by side."""
    regions = (REGION, OTHER_REGION)
    runs = {region: ui.launch_partition("fleet_refresh", region) for region in regions}
    for run_id in runs.values():
        run_ok(ui, run_id)
    return runs


@pytest.fixture(scope="module")
def report_run(ui: DagsterUI, region_runs: dict[str, str]) -> str:
    """`regional_report` over the two regions, so regional_rank's page has content."""
    run_id = ui.client.submit_job_execution("regional_report")
    run_ok(ui, run_id)
    return run_id


def test_graphql_lists_every_asset_of_the_project(ui: DagsterUI, definitions: Definitions):
    keys = ui.asset_keys()
    graph = definitions.resolve_asset_graph()
    project = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
    assert keys == project
    assert set(FLEET_ASSETS + REPORT_ASSETS + TELEMETRY_ASSETS + TIMESERIES_ASSETS) == set(keys)
    assert ui.asset_check_names("sanitized_fleet") == [
        "contract",
        "quarantine_rate_within_gate",
        "records_conserved",
    ]


def test_a_region_launched_over_graphql_succeeds_with_every_check_passed(
    ui: DagsterUI, region_runs: dict[str, str]
):
    run_id = region_runs[REGION]
    checked = 0
    for asset in FLEET_ASSETS:
        for check in ui.asset_check_names(asset):
            executions = ui.asset_check_executions(asset, check, partition=REGION)
            assert [e["runId"] for e in executions] == [run_id], (asset, check)
            [execution] = executions
            assert execution["status"] == "SUCCEEDED", (asset, check, execution)
            assert execution["evaluation"]["success"] is True
            assert execution["evaluation"]["partition"] == REGION
            checked += 1
    assert checked >= len(FLEET_ASSETS)
    [conserved] = ui.asset_check_executions(
        "sanitized_fleet", "records_conserved", partition=REGION
    )
    facts = {e["label"]: e.get("intValue") for e in conserved["evaluation"]["metadataEntries"]}
    assert facts["lost"] == 0 and facts["in_both"] == 0
    statuses = ui.partition_status("sanitized_fleet")["statuses"]
    assert sorted(statuses["materializedPartitions"]) == sorted([REGION, OTHER_REGION])
    assert statuses["failedPartitions"] == []


def expand_all_groups(page: Any) -> None:
    """The global graph shows one box per asset group until they are expanded (kept in
    localStorage, so a reload keeps them open)."""
    page.locator("button:has([aria-label=settings])").last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()


@pytest.fixture(scope="module")
def chromium() -> None:
    """Skip (saying what to install) before any run is spent on a browser that is not here."""
    require_chromium()


def test_the_browser_shows_the_graph_and_regional_rank(
    chromium: None, ui: DagsterUI, report_run: str
):
    with chromium_page(**VIEWPORT) as page:
        capture(page, f"{ui.base_url}/asset-groups", ARTIFACTS / "graph-groups.png",
                wait_for_text="reports")  # fmt: skip
        expand_all_groups(page)
        graph = capture(
            page,
            f"{ui.base_url}/asset-groups",
            ARTIFACTS / "asset-graph.png",
            wait_for_text=["status_before_after", "raw_fleet"],
        )
        rank = capture(
            page,
            f"{ui.base_url}/assets/regional_rank",
            ARTIFACTS / "regional_rank.png",
            wait_for_text=["Latest materialization", "worst_region"],
        )
        partitions = capture(
            page,
            f"{ui.base_url}/assets/sanitized_fleet?view=partitions",
            ARTIFACTS / "sanitized_fleet-partitions.png",
            wait_for_text="Materialized (2)",
        )
    missing = [asset for asset in FLEET_ASSETS + REPORT_ASSETS if asset not in graph.split()]
    assert not missing, f"not on the graph page: {missing}"
    # 2 of 8 region partitions on every fleet asset; the unpartitioned reports materialized.
    assert graph.count("25% filled") == len(FLEET_ASSETS), graph
    # "8 partitions", not the "528 partitions" of a daily x region asset 66 days in
    assert len(re.findall(r"(?<![\d,])8 partitions", graph)) == len(FLEET_ASSETS)
    assert graph.count("Materialized") >= len(REPORT_ASSETS)
    for text in ["regional_rank", "Latest materialization", "worst_region", REGION, OTHER_REGION]:
        assert text in rank, text
    for upstream in ["quarantine", "sanitized_fleet"]:  # the tables regional_rank.sql reads
        assert upstream in rank.split(), upstream
    for text in ["Materialized (2)", "Missing (6)", "Failed (0)", REGION, OTHER_REGION]:
        assert text in partitions, text
