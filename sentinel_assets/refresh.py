"""When a refresh of region shards may be followed by the cross-region report.

The rule: the regional report runs only after every region of a refresh succeeded. While a
region has not finished (or not started) the report waits; once all have finished, any region
that did not succeed withholds it and is named. `sentinel demo` (`cli/orchestrate.run_fleet`)
and the report sensor (`defs/schedules.py`) both ask `report_verdict`. No Dagster here.
"""

from collections.abc import Collection, Mapping
from enum import StrEnum

REPORT = "report"
WAIT = "wait"
WITHHELD = "withheld"


class RegionRun(StrEnum):
    """Where the latest run of one region of a refresh is."""

    RUNNING = "running"  # queued, starting or running: not finished
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed or canceled


def report_verdict(expected: Collection[str], latest: Mapping[str, RegionRun]) -> str:
    """`report`, `wait`, or `withheld: <regions> did not succeed` for a refresh of the
    `expected` regions, given the latest run of each region that has one. A region in
    `latest` but not in `expected` still ran in this refresh and counts too."""
    regions = set(expected) | set(latest)
    if any(latest.get(region, RegionRun.RUNNING) is RegionRun.RUNNING for region in regions):
        return WAIT
    failed = sorted(region for region in regions if latest[region] is not RegionRun.SUCCEEDED)
    if failed:
        return f"{WITHHELD}: {', '.join(failed)} did not succeed"
    return REPORT
