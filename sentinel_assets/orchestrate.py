"""Headless runs: every region's shard as its own Dagster run, several at a time, then the
cross-region report, all recorded in the `DAGSTER_HOME` instance so the UI shows them.

Each worker process runs whole region partitions in process (no per-step subprocess), so the
only start-up cost is one interpreter per worker. Shards write their own Parquet files, so
parallel runs never contend for the DuckDB lock.
"""

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from sentinel_assets.contracts import REGIONS, validate_region
from sentinel_assets.defs.config import data_home

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    """What one Dagster run did, enough for a summary line and a link into the UI."""

    label: str
    run_id: str
    success: bool
    failed_checks: tuple[str, ...] = ()
    error: str = ""


MINIMAL_INSTANCE_YAML = """\
# Written by `sentinel` because none was here; `make demo`/`make ui` copy the repo's
# dagster.yaml instead.
telemetry:
  enabled: false
"""


def prepare_instance_home() -> Path:
    """`DAGSTER_HOME` defaults to a folder inside the data folder. Its storage is created
    here, once, before worker processes open it concurrently (SQLite schema migrations
    racing between processes fail)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(data_home() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(MINIMAL_INSTANCE_YAML)
    with dg.DagsterInstance.get() as instance:
        instance.get_runs_count()
    return home


def _outcome(label: str, result: dg.ExecuteInProcessResult) -> RunOutcome:
    failed = tuple(
        evaluation.asset_check_key.to_user_string()
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    )
    error = ""
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = failures[0].step_key if failures else "run failed"
    return RunOutcome(label, result.run_id, result.success, failed, error)


def run_job(job_name: str, partition_key: str | None = None) -> RunOutcome:
    """Run one job (one partition) in this process against the persistent instance."""
    from sentinel_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            partition_key=partition_key,
            instance=instance,
            run_config=QUIET_LOGS,
            raise_on_error=False,
            tags={"sentinel/launched_by": "sentinel-cli"},
        )
    return _outcome(partition_key or job_name, result)


def run_regions(
    regions: Sequence[str],
    parallel: int,
    on_done: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """One `fleet_refresh` run per region, `parallel` at a time, in region order."""
    for region in regions:
        validate_region(region)
    prepare_instance_home()
    outcomes: dict[str, RunOutcome] = {}
    spawn = multiprocessing.get_context("spawn")  # no forked Polars/DuckDB thread pools
    with ProcessPoolExecutor(max_workers=max(1, parallel), mp_context=spawn) as pool:
        futures = {pool.submit(run_job, "fleet_refresh", region): region for region in regions}
        for future in as_completed(futures):
            region = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # a crashed worker must not hide the other regions
                outcome = RunOutcome(region, "", False, error=f"{type(error).__name__}: {error}")
            outcomes[region] = outcome
            if on_done:
                on_done(outcome)
    return [outcomes[region] for region in regions]


def run_report() -> RunOutcome:
    prepare_instance_home()
    return run_job("regional_report")


def all_regions() -> list[str]:
    return list(REGIONS)
