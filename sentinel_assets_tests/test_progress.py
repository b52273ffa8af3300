"""Live progress of `sentinel demo`, read from the Dagster instance's run and event records.

One piped `sentinel demo` of two small regions (module fixture) feeds every test here: its
output is checked as CI sees it, and its instance is read back as the live view reads it.
"""

import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from rich.console import Console

from sentinel_assets.cli.live import progress_line, progress_table, wants_live_view, watch_demo
from sentinel_assets.cli.progress import (
    DEMO_TAG,
    DemoProgress,
    RegionProgress,
    State,
    progress_from_records,
    rows_of,
    with_error,
)

REPO = Path(__file__).resolve().parent.parent
REGIONS = ["us-east", "eu-west"]
E = dg.DagsterEventType


@dataclass(frozen=True)
class DemoRun:
    home: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`sentinel demo` for two 500-device regions with stdout piped, as in CI."""
    home = tmp_path_factory.mktemp("demo") / "sentinel"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    env.pop("CI", None)  # piped stdout alone must switch to plain lines
    command = ["demo", "--regions", ",".join(REGIONS), "--devices-per-region", "500"]
    done = subprocess.run(
        [sys.executable, "-m", "sentinel_assets.cli.main", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return DemoRun(home, done.returncode, done.stdout, done.stderr)


@pytest.fixture
def demo_instance(demo_run: DemoRun, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The demo's own instance, as the CLI opened it."""
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    monkeypatch.setenv("DAGSTER_HOME", str(demo_run.dagster_home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def demo_id_of(instance: dg.DagsterInstance) -> str:
    [demo_id] = {run.tags[DEMO_TAG] for run in instance.get_runs()}
    return demo_id


def region_run(instance: dg.DagsterInstance, region: str) -> dg.RunRecord:
    [record] = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": region}))
    return record


@pytest.mark.slow
def test_piped_demo_prints_plain_progress_lines_then_the_summary(demo_run: DemoRun):
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    out = demo_run.stdout
    assert "\x1b[" not in out, "no live view and no colour when piped"
    for region in REGIONS:
        assert re.search(rf"^{region} running \w+ [\d,]+ rows", out, re.MULTILINE), out
        done = re.search(
            rf"^{region} done ([\d,]+) rows .* checks (\d+) passed, 0 failed", out, re.MULTILINE
        )
        assert done and int(done[1].replace(",", "")) > 0 and int(done[2]) > 0, out
    assert re.search(r"^regional_report done ", out, re.MULTILINE), out
    assert "Sentinel: OTA campaign by region" in out
    assert "Finished in" in out
    lines = [line for line in out.splitlines() if line.startswith("us-east ")]
    assert len(lines) == len(set(lines)), "a line is printed only when something changed"


@pytest.mark.slow
def test_the_snapshot_read_from_the_instance_matches_its_event_log(
    demo_instance: dg.DagsterInstance,
):
    reader = DemoProgress(demo_instance, demo_id_of(demo_instance), REGIONS)
    snapshot = reader.snapshot(now=0.0)
    assert [p.label for p in snapshot] == [*REGIONS, "regional_report"]
    for progress in snapshot:
        run_id = progress.run_id
        checks = demo_instance.all_logs(run_id, of_type=E.ASSET_CHECK_EVALUATION)
        materializations = demo_instance.all_logs(run_id, of_type=E.ASSET_MATERIALIZATION)
        assert progress.state is State.DONE
        assert progress.rows > 0 and progress.seconds > 0 and progress.rows_per_second > 0
        assert progress.checks_passed == len(checks) > 0
        assert progress.checks_failed == 0 and not progress.failed_steps
        assert progress.step == ""
        expected_rows = sum(
            rows_of(e.dagster_event.step_materialization_data.materialization.metadata)
            for e in materializations
        )
        assert progress.rows == expected_rows
    assert snapshot[0].rows >= 500, "raw_fleet alone writes 500 rows"
    assert reader.snapshot(now=0.0) == snapshot, "a second poll reads nothing twice"


@pytest.mark.slow
def test_a_partial_event_log_shows_the_region_running_at_its_current_step(
    demo_instance: dg.DagsterInstance,
):
    record = region_run(demo_instance, "us-east")
    run_id = record.dagster_run.run_id
    records = demo_instance.get_records_for_run(run_id).records
    kinds = [r.event_log_entry.dagster_event_type for r in records]
    # Cut the log where raw_fleet is written (and checked) and chaos_injection has started.
    cut = kinds.index(E.STEP_START, kinds.index(E.ASSET_MATERIALIZATION)) + 1
    started = record.start_time or 0.0
    progress = progress_from_records(
        "us-east",
        records[:cut],
        status=dg.DagsterRunStatus.STARTED,
        run_id=run_id,
        started_at=started,
        now=started + 2.0,
    )
    assert progress.state is State.RUNNING and progress.step == "chaos_injection"
    assert progress.rows == 500 and progress.rows_per_second == 250.0
    assert progress.checks_passed == 1 and progress.checks_failed == 0  # raw_fleet:contract
    line = progress_line(progress)
    assert line == "us-east running chaos_injection 500 rows 250 rows/s checks 1 passed, 0 failed"


@pytest.mark.slow
def test_the_live_view_draws_a_table_from_the_instance(demo_instance: dg.DagsterInstance):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    with watch_demo(console, demo_id_of(demo_instance), REGIONS, live=True) as (poll, _):
        poll()
    text = buffer.getvalue()
    assert "Sentinel runs (from the Dagster instance)" in text
    for label in [*REGIONS, "regional_report"]:
        assert re.search(rf"{label}\s+│ done", text), text


def test_a_region_waiting_for_a_worker_is_queued_and_a_dead_worker_fails_it():
    queued = RegionProgress("ap-south")
    assert progress_line(queued) == "ap-south queued"
    died = with_error(queued, "BrokenProcessPool: a worker died")
    assert died.state is State.FAILED
    assert progress_line(died).endswith("BrokenProcessPool: a worker died")
    done = RegionProgress("eu-west", State.DONE, rows=10, seconds=1.0)
    assert with_error(done, "late error") == done
    console = Console(file=io.StringIO(), width=160)
    console.print(progress_table([queued, died, done]))
    assert "ap-south" in console.file.getvalue()


def test_piped_or_ci_output_gets_plain_lines(monkeypatch: pytest.MonkeyPatch):
    assert not wants_live_view(io.StringIO())

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_live_view(Tty())
    monkeypatch.setenv("CI", "true")
    assert not wants_live_view(Tty())


@dg.asset
def toy_shard() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"devices": 3})


@dg.asset_check(asset=toy_shard)
def toy_shard_is_big() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


@dg.asset(deps=[toy_shard])
def toy_report() -> None:
    raise RuntimeError("the report broke")


def test_a_failed_check_and_a_failed_step_fail_the_region(instance: dg.DagsterInstance):
    """Records of a real (toy) run whose check fails and whose last step raises."""
    result = dg.materialize(
        [toy_shard, toy_shard_is_big, toy_report],
        instance=instance,
        raise_on_error=False,
        tags={DEMO_TAG: "toy"},
    )
    [progress] = DemoProgress(instance, "toy", []).snapshot(now=0.0)
    assert progress.label == result.dagster_run.job_name
    assert progress.state is State.FAILED and progress.run_id == result.run_id
    assert progress.rows == 3 and progress.checks_passed == 0
    assert progress.failed_checks == ("toy_shard:toy_shard_is_big",)
    assert progress.failed_steps == ("toy_report",) and progress.step == "toy_report"
    line = progress_line(progress)
    assert line.startswith(f"{progress.label} failed toy_report 3 rows "), line
    assert line.endswith("failed checks: toy_shard:toy_shard_is_big"), line
