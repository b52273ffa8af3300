"""The rule both `sentinel demo` and the report sensor follow: the regional report runs only
after every region of a refresh succeeded."""

from concurrent.futures import Future
from pathlib import Path

from sentinel_assets.cli import orchestrate
from sentinel_assets.cli.orchestrate import RunOutcome, one_run_wanted, region_range, run_fleet
from sentinel_assets.contracts import REGIONS as ALL
from sentinel_assets.refresh import REPORT, WAIT, RegionRun, report_verdict

OK, FAILED, RUNNING = RegionRun.SUCCEEDED, RegionRun.FAILED, RegionRun.RUNNING
REGIONS = ["us-east", "eu-west", "ap-south"]


def test_every_region_succeeded_means_report():
    assert report_verdict(REGIONS, dict.fromkeys(REGIONS, OK)) == REPORT == "report"


def test_a_region_still_running_means_wait():
    latest = {"us-east": OK, "eu-west": RUNNING, "ap-south": OK}
    assert report_verdict(REGIONS, latest) == WAIT == "wait"


def test_a_region_without_a_run_yet_means_wait():
    assert report_verdict(REGIONS, {"us-east": OK, "eu-west": OK}) == WAIT


def test_the_report_waits_for_every_region_even_after_a_failure():
    """Withholding is said once all runs have ended, so the message names every failure."""
    assert report_verdict(REGIONS, {"us-east": FAILED, "eu-west": RUNNING}) == WAIT
    assert report_verdict(REGIONS, {"us-east": FAILED, "eu-west": OK}) == WAIT


def test_a_failed_region_withholds_the_report_and_is_named():
    latest = {"us-east": OK, "eu-west": FAILED, "ap-south": OK}
    assert report_verdict(REGIONS, latest) == "withheld: eu-west did not succeed"


def test_every_failed_region_is_named_in_order():
    latest = {"us-east": FAILED, "eu-west": OK, "ap-south": FAILED}
    assert report_verdict(REGIONS, latest) == "withheld: ap-south, us-east did not succeed"


def test_a_region_run_outside_the_expected_ones_counts_too():
    """A run tagged with the refresh took part in it, whatever the caller expected."""
    latest = {"us-east": OK, "eu-west": OK, "ap-south": OK, "sa-east": FAILED}
    assert report_verdict(REGIONS, latest) == "withheld: sa-east did not succeed"
    assert report_verdict(REGIONS, {**latest, "sa-east": RUNNING}) == WAIT
    assert report_verdict(REGIONS, {**latest, "sa-east": OK}) == REPORT


def test_the_order_of_the_expected_regions_does_not_matter():
    latest = dict.fromkeys(REGIONS, OK)
    assert report_verdict(REGIONS[::-1], latest) == REPORT
    assert report_verdict(set(REGIONS), {**latest, "us-east": FAILED}) == (
        "withheld: us-east did not succeed"
    )


class FinishedRuns:
    """Stands in for `run_fleet`'s worker pool: every submitted run has already ended, a
    region's successfully unless it is in `failing`; records which jobs were submitted."""

    def __init__(self, failing: frozenset[str] = frozenset()):
        self.failing = failing
        self.jobs: list[str] = []

    def submit(self, _fn, job_name: str, partition_key: str | None = None, tags=None) -> Future:
        self.jobs.append(job_name)
        label = partition_key or job_name
        future: Future = Future()
        future.set_result(RunOutcome(label, f"run-{label}", label not in self.failing))
        return future


def test_sentinel_demo_runs_the_report_after_every_region_succeeded(sentinel_home: Path):
    pool = FinishedRuns()
    fleet = run_fleet(REGIONS, 2, pool=pool, poll_seconds=0.01)
    assert pool.jobs == ["fleet_refresh"] * 3 + ["regional_report"]
    assert fleet.report is not None and fleet.success


def test_sentinel_demo_withholds_the_report_after_a_failed_region(sentinel_home: Path):
    pool = FinishedRuns(failing=frozenset({"eu-west"}))
    fleet = run_fleet(REGIONS, 2, pool=pool, poll_seconds=0.01)
    assert pool.jobs == ["fleet_refresh"] * 3
    assert fleet.report is None and not fleet.success
    assert [o.label for o in fleet.regions if not o.success] == ["eu-west"]


def one_run_that(success: bool, calls: list[tuple[str, dict]]):
    """Stands in for the one run `run_fleet(one_run=True)` executes in its own process."""

    def run_job(job_name: str, partition_key: str | None = None, tags=None) -> RunOutcome:
        calls.append((job_name, dict(tags or {})))
        return RunOutcome(job_name, "run-whole", success, error="" if success else "boom")

    return run_job


def test_one_run_refreshes_a_range_of_regions_and_its_reports_at_once(
    sentinel_home: Path, monkeypatch
):
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(orchestrate, "run_job", one_run_that(True, calls))
    pool = FinishedRuns()
    fleet = run_fleet(list(ALL), 2, pool=pool, one_run=True, poll_seconds=0.01)
    assert [job for job, _ in calls] == ["fleet_and_reports"] and pool.jobs == []
    assert calls[0][1][orchestrate.RANGE_START_TAG] == ALL[0]
    assert calls[0][1][orchestrate.RANGE_END_TAG] == ALL[-1]
    assert fleet.success and [o.label for o in fleet.regions] == list(ALL)
    assert {o.run_id for o in [*fleet.regions, fleet.report]} == {"run-whole"}


def test_a_failed_one_run_is_run_again_one_region_per_run(sentinel_home: Path, monkeypatch):
    """So one region's failed check neither hides nor spreads to another's result."""
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(orchestrate, "run_job", one_run_that(False, calls))
    pool = FinishedRuns(failing=frozenset({ALL[1]}))
    fleet = run_fleet(list(ALL), 2, pool=pool, one_run=True, poll_seconds=0.01)
    assert [job for job, _ in calls] == ["fleet_and_reports"]
    assert pool.jobs == ["fleet_refresh"] * len(ALL)
    assert fleet.one_run is not None and not fleet.one_run.success
    assert [o.label for o in fleet.regions if not o.success] == [ALL[1]]
    assert fleet.report is None and not fleet.success


def test_regions_outside_one_range_of_partitions_never_share_a_run():
    assert region_range(list(ALL)) == (ALL[0], ALL[-1])
    assert region_range([ALL[2], ALL[1]]) == (ALL[1], ALL[2])
    assert region_range([ALL[0], ALL[2]]) is None  # a gap
    assert region_range([ALL[0], ALL[0]]) is None
    assert region_range(["mars-1"]) is None
    assert not one_run_wanted("auto", [ALL[0], ALL[2]], 10)
    assert one_run_wanted("auto", list(ALL), 10) and one_run_wanted("one", list(ALL), 10**9)
    assert not one_run_wanted("auto", list(ALL), 10**9)  # past SENTINEL_ONE_RUN_MAX_DEVICES
    assert not one_run_wanted("per-region", list(ALL), 10)
