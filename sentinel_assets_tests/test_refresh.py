"""The rule both `sentinel demo` and the report sensor follow: the regional report runs only
after every region of a refresh succeeded."""

from concurrent.futures import Future
from pathlib import Path

from sentinel_assets.cli.orchestrate import RunOutcome, run_fleet
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
