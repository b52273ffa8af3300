"""1. Kill at every stage: a region run SIGKILLed during generation, chaos, sanitize, the
shard write (between write and rename), the catalog view update and a report write leaves
every shard and report table whole (the previous version or the new one, never a mix inside
a file), nothing a later run trips on, no run or pool slot stuck once swept, and a rerun that
gives exactly the result of a run that was never killed."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets.cli.stale_runs import sweep_dead_runs
from sentinel_assets_tests.reliability.shared import (
    environment,
    instance_at,
    lost_and_duplicated,
    materialize,
    new_home,
    snapshot,
    start_module,
    stuck,
    torn,
)
from sentinel_assets_tests.reliability.table import ScenarioRow, full_size, sized

pytestmark = pytest.mark.long(50)

ALL_STAGES = (
    "generation", "chaos", "sanitize", "shard write", "catalog view update", "report write"
)  # fmt: skip
# `make test` kills at the stages that write files (and one that does not); `make
# reliability` at all six.
STAGES = (
    ALL_STAGES if full_size() else ("chaos", "shard write", "catalog view update", "report write")
)
REGIONS = ("eu-west", "af-south")
KILLED = "eu-west"
# The killed run writes a different fleet size than the one on disk, so "previous version"
# and "new version" are told apart by content.
PREVIOUS_DEVICES = sized(300, 20_000)
NEW_DEVICES = sized(400, 25_000)
REFRESH = [("fleet_refresh", KILLED), ("regional_report", None)]


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, definitions: dg.Definitions):
    """`previous`: both regions and the report; `new`: that, after eu-west and the report
    ran again at the new fleet size without a fault."""
    previous = new_home(tmp_path_factory.mktemp("previous") / "sentinel")
    jobs = [("fleet_refresh", region) for region in REGIONS] + [("regional_report", None)]
    assert all(r.success for r in materialize(definitions, previous, PREVIOUS_DEVICES, jobs))
    new = tmp_path_factory.mktemp("new") / "sentinel"
    shutil.copytree(previous, new)
    assert all(r.success for r in materialize(definitions, new, NEW_DEVICES, REFRESH))
    return previous, new


def killed_jobs(stage: str) -> list[str]:
    """The report stages are reached by a clean region run and then the report."""
    if stage in ("catalog view update", "report write"):
        return [f"fleet_refresh:{KILLED}", "regional_report"]
    return [f"fleet_refresh:{KILLED}"]


@pytest.mark.slow
@pytest.mark.reliability("1. kill at every stage")
def test_a_run_killed_at_any_stage_leaves_whole_files_and_reruns_to_the_same_result(
    scenario: ScenarioRow, versions, definitions: dg.Definitions, tmp_path: Path
):
    previous, new = versions
    before, after = snapshot(previous), snapshot(new)
    # The two versions differ where the killed run writes, and only there.
    assert torn(before, before, after) == []
    assert f"sanitized_fleet/region={KILLED}.parquet" in torn(before, after, after)

    homes = {stage: tmp_path / stage.replace(" ", "-") / "sentinel" for stage in STAGES}
    for home in homes.values():
        shutil.copytree(previous, home)
    # Two killed processes at a time (2 cores); each dies at its stage.
    pending = list(STAGES)
    while pending:
        batch, pending = pending[:2], pending[2:]
        processes = {
            stage: start_module(
                "sentinel_assets_tests.reliability.kill_at",
                stage,
                *killed_jobs(stage),
                env=environment(homes[stage], NEW_DEVICES),
            )
            for stage in batch
        }
        for stage, process in processes.items():
            _, err = process.communicate(timeout=300)
            assert process.returncode == -9, f"{stage}: not killed ({process.returncode}) {err}"

    problems: dict[str, list[str]] = {}
    for stage, home in homes.items():
        scenario.runs += len(killed_jobs(stage))
        found = [f"torn: {name}" for name in torn(snapshot(home), before, after)]
        with instance_at(home) as instance:
            swept = sweep_dead_runs(instance)
            if len(swept) != 1:
                found.append(f"{len(swept)} dead runs swept, expected the killed one")
            reruns = materialize(definitions, home, NEW_DEVICES, REFRESH, instance=instance)
            scenario.runs += len(reruns)
            found += [f"rerun failed: {r.dagster_run.job_name}" for r in reruns if not r.success]
            found += stuck(instance)
        final = snapshot(home)
        found += [f"rerun differs: {name}" for name in torn(final, after, after)]
        lost = duplicated = 0
        for table in ("sanitized_fleet", "quarantine", "recovery_decisions"):
            shard = f"{table}/region={KILLED}.parquet"
            missing, extra = lost_and_duplicated(after[shard], final[shard])
            lost, duplicated = lost + missing, duplicated + extra
        scenario.fault(survived=not found and not lost and not duplicated, lost=lost,
                       duplicates=duplicated)  # fmt: skip
        if found:
            problems[stage] = found
    assert problems == {}
    assert scenario.records_lost == 0 and scenario.duplicates == 0
    assert scenario.survived == len(STAGES)
