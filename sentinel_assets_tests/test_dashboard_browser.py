"""The dashboard as an operator sees it: `streamlit run` on a free 127.0.0.1 port over a demo
warehouse, looked at in headless Debian Chromium (the harness in `browser.py`); a slider moved
with the keyboard; then a device's day and the anomaly what-if. Screenshots land in
`test-artifacts/dashboard/` (git-ignored).

Needs Streamlit (`.venv-dashboard`, run by `make test`) and Chromium (`make browser`).
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import requests

from sentinel_assets import warehouse
from sentinel_assets.defs.config import SimulationSettings
from sentinel_assets.recovery import RecoveryPolicy, decide_recovery
from sentinel_assets.timeseries import store
from sentinel_assets_tests.browser import (
    _wait_until_settled,
    capture,
    chromium_page,
    require_chromium,
)
from sentinel_assets_tests.conftest import DEMO_DAY, DEMO_REGION
from sentinel_assets_tests.webserver import free_port

pytest.importorskip("streamlit", reason="Streamlit is in .venv-dashboard (make dashboard-install)")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "sentinel_assets" / "dashboard" / "app.py"
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
REGIONS = ("af-south", "eu-west")
VIEWPORT = {"width": 1500, "height": 1450}


@contextlib.contextmanager
def running_dashboard(home: Path, log_path: Path) -> Iterator[str]:
    """`streamlit run` in its own process group; yields its URL once healthy; always stops."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    env = {**os.environ, "SENTINEL_HOME": str(home)}
    env.pop("SENTINEL_AS_OF", None)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"streamlit exited: {log_path.read_text()[-2000:]}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/_stcore/health", timeout=2).ok:
                    break
            assert time.monotonic() < deadline, f"not healthy in 60 s: {log_path.read_text()}"
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def changed_devices(text: str) -> int:
    match = re.search(r"Devices whose action changes \(([\d,]+)\)", text)
    assert match, text[:2000]
    return int(match.group(1).replace(",", ""))


def expected_changes(home: Path, policy: RecoveryPolicy) -> int:
    """Devices whose action differs between the materialized decisions and `policy`'s."""

    def table(asset: str) -> pl.DataFrame:
        return pl.concat(
            warehouse.read_partition(warehouse.partition_file(home / "tables", asset, region))
            for region in REGIONS
        )

    fleet, materialized = table("sanitized_fleet"), table("recovery_decisions")
    expected = decide_recovery(fleet, policy, as_of=SimulationSettings().as_of_utc())
    joined = materialized.join(expected, on=["region", "record_id"], how="full", coalesce=True)
    return joined.filter(
        pl.col("action").fill_null("none") != pl.col("action_right").fill_null("none")
    ).height


def test_the_running_dashboard_shows_the_overview_and_a_slider_moves_the_what_if(
    demo_warehouse, tmp_path
):
    require_chromium()
    with (
        running_dashboard(demo_warehouse, tmp_path / "streamlit.log") as url,
        chromium_page(**VIEWPORT) as page,
    ):
        overview = capture(
            page,
            f"{url}/?view=overview",
            ARTIFACTS / "overview.png",
            wait_for_text=["Worst upgrade paths", "data last materialized"],
            full_page=True,
        )
        for text in ["Campaign halted in af-south", *REGIONS, "Failure rate by region"]:
            assert text in overview, text

        before = capture(
            page,
            f"{url}/?view=whatif",
            ARTIFACTS / "whatif-default.png",
            wait_for_text=["Devices whose action changes", "Launch with this policy"],
        )
        assert changed_devices(before) == 0

        guard = page.get_by_test_id("stSlider").first  # Rollback: minimum battery (%)
        assert "Rollback: minimum battery" in guard.inner_text()
        slider = guard.get_by_role("slider")
        slider.focus()
        for _ in range(25):
            slider.press("ArrowRight")
        page.get_by_text(re.compile(r"Devices whose action changes \([1-9]")).wait_for(
            timeout=60_000
        )
        value = float(guard.get_by_test_id("stSliderThumbValue").inner_text())
        assert value == RecoveryPolicy().min_rollback_battery_pct + 25
        # Each key press reruns the script: wait for the rerun of the final value, whose count
        # is what the pipeline's own decide_recovery gives at that guard.
        changed = expected_changes(demo_warehouse, RecoveryPolicy(min_rollback_battery_pct=value))
        assert changed > 0
        page.get_by_text(f"Devices whose action changes ({changed})").wait_for(timeout=60_000)
        # Same page, no reload (a reload would start a new session at the defaults).
        _wait_until_settled(page, time.monotonic() + 60)
        page.screenshot(path=str(ARTIFACTS / "whatif.png"), full_page=True)
        after = page.inner_text("body")

        stats = store.read_partition(
            demo_warehouse / "tables", "daily_device_stats", DEMO_DAY, DEMO_REGION
        )  # the device with most anomaly episodes, then outages: every kind of mark shows
        device = stats.sort(["anomaly_episodes", "slots_outage"], descending=True)["device_id"][0]
        query = f"view=device&region={DEMO_REGION}&date={DEMO_DAY}&device={device}"
        drill_down = capture(
            page,
            f"{url}/?{query}",
            ARTIFACTS / "device.png",
            wait_for_text=["Measured slots", "Outage slots"],
            wait_for_selector="[data-testid='stVegaLiteChart']",
            full_page=True,
        )
        assert device in drill_down and "Traceback" not in drill_down
        anomalies = capture(
            page,
            f"{url}/?view=whatif&tab=anomalies",
            ARTIFACTS / "whatif-anomalies.png",
            wait_for_text=["Episodes per region and rule", "Launch with these thresholds"],
            full_page=True,
        )
        assert "Traceback" not in anomalies
    assert changed_devices(after) == changed
    assert (ARTIFACTS / "overview.png").stat().st_size > 0
    assert (ARTIFACTS / "whatif.png").stat().st_size > 0
    assert (ARTIFACTS / "device.png").stat().st_size > 0
