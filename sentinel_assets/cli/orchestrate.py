"""Headless runs: every region's shard as its own Dagster run, several at a time, then the
cross-region report, all recorded in the `DAGSTER_HOME` instance so the UI shows them.

Each worker process runs whole region partitions in process (no per-step subprocess), so the
only start-up cost is one interpreter per worker. Shards write their own Parquet files, so
parallel runs never contend for the DuckDB lock.
"""

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from sentinel_assets import paths
from sentinel_assets.cli.instance import command_instance
from sentinel_assets.cli.stale_runs import end_runs_of_this_process, process_tags, sweep_dead_runs
from sentinel_assets.contracts import validate_region
from sentinel_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from sentinel_assets.failures import reads_as_disk_full
from sentinel_assets.refresh import REPORT, RegionRun, report_verdict

# Dagster's console log is silenced in these runs (it would echo a failed step with its whole
# stack): `sentinel` prints each failed run's reason in one line (`step_failure_reason`) and
# its live view reads progress from the instance, where the UI keeps every event.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


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


def instance_home() -> Path:
    """`DAGSTER_HOME` (default: inside the data folder), with a dagster.yaml. Set in the
    environment, so this process's Dagster and the workers it spawns open the same one."""
    home = paths.dagster_home()
    os.environ[paths.DAGSTER_HOME_ENV] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(MINIMAL_INSTANCE_YAML)
    return home


def prepare_instance_home() -> Path:
    """The instance's storage is created here, once, before worker processes open it
    concurrently (SQLite schema migrations racing between processes fail)."""
    home = instance_home()
    with command_instance() as instance:
        instance.get_runs_count()
    return home


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Worker initializer: the kernel sends SIGKILL to this worker when its parent dies, in
    any way (SIGKILL, SIGTERM, a crash), so no worker outlives the command. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def end_workers(pool: ProcessPoolExecutor) -> list[str]:
    """Kill every worker and mark the runs they were executing failed (their slots freed):
    the command was interrupted and leaves neither a process nor a stuck run behind. SIGKILL,
    not SIGTERM: Dagster turns SIGTERM in a worker into a KeyboardInterrupt traceback."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(5.0)
    with command_instance() as instance:
        return sweep_dead_runs(instance)


class QuietFullDiskNoise:
    """A worker's stderr without Dagster's "Exception while writing logger call to event
    log: ... disk is full" line for every log call once the disk is full (the run's failure
    and `sentinel`'s closing sentence say it once); everything else passes through."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Exception while writing logger call") and reads_as_disk_full(text):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def load_definitions() -> None:
    """Run first in each worker: the imports (Dagster, Polars, Pandera, the definitions)
    overlap with the instance set-up in the parent instead of following it."""
    from sentinel_assets.definitions import run_defs

    if not isinstance(sys.stderr, QuietFullDiskNoise):
        sys.stderr = QuietFullDiskNoise(sys.stderr)
    run_defs()


def _outcome(label: str, result: dg.JobExecutionResult) -> RunOutcome:
    failed = tuple(
        evaluation.asset_check_key.to_user_string()
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    )
    error = ""
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = step_failure_reason(failures[0]) if failures else "run failed"
    return RunOutcome(label, result.run_id, result.success, failed, error)


def step_failure_reason(event: dg.DagsterEvent) -> str:
    """`step: first line of its error`, what a person needs to see before opening the UI."""
    data = event.step_failure_data
    described = data.user_failure_data.description if data.user_failure_data else None
    error = data.error
    while error is not None and error.message.startswith("Exceeded max_retries") and error.cause:
        error = error.cause  # what the retries met, not that they ran out
    message = described or (error.message if error else "") or "failed"
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    return f"{event.step_key}: {first[:300]}"


def command_job(job_name: str) -> dg.JobDefinition:
    """A job of the definitions by name: what `run_job` hands Dagster to rebuild it."""
    from sentinel_assets.definitions import run_defs

    return run_defs().resolve_job_def(job_name)


def run_job(
    job_name: str, partition_key: str | None = None, tags: Mapping[str, str] | None = None
) -> RunOutcome:
    """Run one job (one partition) against the persistent instance, with the job's executor
    (in this process by default). `execute_job`, not `execute_in_process`: the latter keeps
    every step's output in memory until the run ends (for `output_for_node`), ~6 GiB of
    frames by the last step of a 12.5M-device region."""
    job = dg.build_reconstructable_job(__name__, command_job.__name__, (job_name,))
    partition = {PARTITION_TAG: partition_key} if partition_key else {}
    with command_instance() as instance:
        result = dg.execute_job(
            job,
            instance,
            run_config=QUIET_LOGS,
            raise_on_error=False,
            tags={
                "sentinel/launched_by": "sentinel-cli",
                **process_tags(),
                **partition,
                **(tags or {}),
            },
        )
    return _outcome(partition_key or job_name, result)


@dataclass(frozen=True)
class FleetOutcome:
    """Every region's run, then the report's (None when a region failed and it never ran);
    after a successful one-run refresh, every region's outcome is that run's."""

    regions: list[RunOutcome]
    report: RunOutcome | None
    # The single run over every region, when there was one (it failed if regions ran again).
    one_run: RunOutcome | None = None

    @property
    def success(self) -> bool:
        return self.report is not None and self.report.success


def _await_runs(
    futures: Mapping[Future[RunOutcome], str],
    on_done: Callable[[RunOutcome], None] | None,
    on_poll: Callable[[], None] | None,
    poll_seconds: float,
) -> dict[str, RunOutcome]:
    """Collect the runs as they finish, calling `on_poll` every `poll_seconds` meanwhile."""
    outcomes: dict[str, RunOutcome] = {}
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=poll_seconds, return_when=FIRST_COMPLETED)
        for future in finished:
            label = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # a crashed worker must not hide the other regions
                first = (str(error).strip().splitlines() or [""])[0][:300]
                outcome = RunOutcome(label, "", False, error=f"{type(error).__name__}: {first}")
            outcomes[label] = outcome
            if on_done:
                on_done(outcome)
        if on_poll:
            on_poll()
    return outcomes


FRESH_WORKER_DEVICES_ENV = "SENTINEL_FRESH_WORKER_DEVICES"
FRESH_WORKER_DEVICES = 2_000_000


def fresh_workers_wanted() -> bool:
    """A new worker per region run when a region holds `SENTINEL_FRESH_WORKER_DEVICES` (2M)
    devices or more (`SENTINEL_DEVICES_PER_REGION`): its ~1.5 s start-up is then under 5 %
    of the run."""
    from sentinel_assets.defs.config import devices_per_region, env_int

    return devices_per_region() >= env_int(FRESH_WORKER_DEVICES_ENV, FRESH_WORKER_DEVICES)


@contextmanager
def worker_pool(parallel: int) -> Iterator[ProcessPoolExecutor]:
    """`parallel` spawned worker processes (no forked Polars/DuckDB thread pools) that start
    loading the definitions at once, while this process goes on (e.g. preparing the
    instance). For regions of `FRESH_WORKER_DEVICES` devices or more, each region's run gets
    a new worker instead: a worker that ran a 12.5M-device region keeps several GiB its
    allocator does not give back, which the next region's run would add to."""
    instance_home()  # in the environment before the workers start
    workers = max(1, parallel)
    spawn = multiprocessing.get_context("spawn")
    fresh = fresh_workers_wanted()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=spawn,
        initializer=die_with_parent,
        max_tasks_per_child=1 if fresh else None,
    )
    try:
        for _ in range(0 if fresh else workers):  # a warm-up would be a fresh worker's one task
            pool.submit(load_definitions)
        yield pool
    except BaseException:
        # Ctrl-C, SIGTERM (`sentinel` turns it into SystemExit) or an error here: the runs
        # still going in the workers are ended with them, not left busy after we exit.
        end_workers(pool)
        raise
    finally:
        # Every run has ended here. The workers' interpreters take 1-2 s to exit (a last
        # garbage collection over Dagster, Polars and DuckDB), which overlaps with this
        # process printing the results; Python still waits for them before it exits itself.
        pool.shutdown(wait=False, cancel_futures=True)


ONE_RUN_JOB = "fleet_and_reports"
# Largest fleet refreshed in one run by default: that run's steps hold every region's frames
# of an asset at once (1M devices: ~1.5 GiB); past it, regions run side by side, one each.
ONE_RUN_MAX_DEVICES_ENV = "SENTINEL_ONE_RUN_MAX_DEVICES"
ONE_RUN_MAX_DEVICES = 2_000_000
RUN_MODES = ("auto", "one", "per-region")


def region_range(regions: Sequence[str]) -> tuple[str, str] | None:
    """`(first, last)` when `regions` are exactly a contiguous run of the region partitions
    (what one run over a partition range can target), else None."""
    from sentinel_assets.defs.partitions import region_partitions

    keys = list(region_partitions.get_partition_keys())
    if not regions or len(set(regions)) != len(regions) or any(r not in keys for r in regions):
        return None
    positions = sorted(keys.index(region) for region in regions)
    if positions != list(range(positions[0], positions[0] + len(regions))):
        return None
    return keys[positions[0]], keys[positions[-1]]


def one_run_wanted(mode: str, regions: Sequence[str], devices_per_region: int) -> bool:
    """Whether `sentinel demo` refreshes `regions` in one run (`--runs`): `auto` does up to
    `SENTINEL_ONE_RUN_MAX_DEVICES` devices; regions that are not one contiguous range of the
    partitions always run one per run."""
    if mode not in RUN_MODES:
        raise ValueError(f"--runs must be one of {', '.join(RUN_MODES)}, not {mode!r}")
    if mode == "per-region" or region_range(regions) is None:
        return False
    if mode == "one":
        return True
    from sentinel_assets.defs.config import env_int

    limit = env_int(ONE_RUN_MAX_DEVICES_ENV, ONE_RUN_MAX_DEVICES)
    return devices_per_region * len(regions) <= limit


def one_run_tags(regions: Sequence[str], tags: Mapping[str, str] | None) -> dict[str, str]:
    """The tags of one run over the range of region partitions `regions` is."""
    bounds = region_range(regions)
    if bounds is None:
        raise ValueError(f"{', '.join(regions)} are not one range of region partitions")
    return {**(tags or {}), RANGE_START_TAG: bounds[0], RANGE_END_TAG: bounds[1]}


ONE_RUN_THREAD = "sentinel-one-run"


def one_run_in_progress() -> bool:
    """A one-run refresh's thread (`in_thread`) is still working in this process."""
    return any(t.name == ONE_RUN_THREAD and t.is_alive() for t in threading.enumerate())


def in_thread(work: Callable[[], RunOutcome]) -> Future[RunOutcome]:
    """`work` in a daemon thread of this process, as a future `_await_runs` can wait on: a
    one-run refresh needs no worker interpreter (Dagster and the definitions are loaded
    here already), and Ctrl-C never waits for it (`end_own_runs` marks its run failed)."""
    future: Future[RunOutcome] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(work())
            except BaseException as error:
                future.set_exception(error)

    threading.Thread(target=run, name=ONE_RUN_THREAD, daemon=True).start()
    return future


def end_own_runs() -> list[str]:
    """Mark failed the unfinished runs this process executes in its own threads (it is
    exiting: interrupted or stopped), their pool slots freed; returns their run ids."""
    with command_instance() as instance:
        return end_runs_of_this_process(
            instance, "Ended: the `sentinel` command running it was interrupted."
        )


def run_fleet(
    regions: Sequence[str],
    parallel: int,
    *,
    tags: Mapping[str, str] | None = None,
    on_done: Callable[[RunOutcome], None] | None = None,
    on_poll: Callable[[], None] | None = None,
    poll_seconds: float = 0.5,
    pool: ProcessPoolExecutor | None = None,
    one_run: bool = False,
) -> FleetOutcome:
    """One `fleet_refresh` run per region, `parallel` at a time (in `pool`, else a new
    `worker_pool`), then, once every region succeeded (`refresh.report_verdict`), the
    `regional_report` run in an already warm worker. With `one_run`, a single run in this
    process does every region and the reports first; if it fails, the regions are run again
    one per run, so one region's failed check neither hides nor spreads to another's result.
    `on_poll` is called every `poll_seconds` from this process while runs go (the live
    view)."""
    for region in regions:
        validate_region(region)
    if one_run:
        return _run_fleet_at_once(regions, parallel, tags, on_done, on_poll, poll_seconds, pool)
    if pool is None:
        with worker_pool(parallel) as new_pool:
            return run_fleet(
                regions, parallel, tags=tags, on_done=on_done,
                on_poll=on_poll, poll_seconds=poll_seconds, pool=new_pool,
            )  # fmt: skip
    prepare_instance_home()
    futures = {pool.submit(run_job, "fleet_refresh", region, tags): region for region in regions}
    outcomes = _await_runs(futures, on_done, on_poll, poll_seconds)
    ordered = [outcomes[region] for region in regions]
    latest = {o.label: RegionRun.SUCCEEDED if o.success else RegionRun.FAILED for o in ordered}
    if report_verdict(regions, latest) != REPORT:
        return FleetOutcome(ordered, None)
    future = pool.submit(run_job, "regional_report", None, tags)
    reported = _await_runs({future: "regional_report"}, on_done, on_poll, poll_seconds)
    return FleetOutcome(ordered, reported["regional_report"])


def _run_fleet_at_once(
    regions: Sequence[str],
    parallel: int,
    tags: Mapping[str, str] | None,
    on_done: Callable[[RunOutcome], None] | None,
    on_poll: Callable[[], None] | None,
    poll_seconds: float,
    pool: ProcessPoolExecutor | None,
) -> FleetOutcome:
    """`run_fleet` with `one_run`: the single run here, then region runs (in `pool`, else
    new workers) only if it failed."""
    prepare_instance_home()
    range_tags = one_run_tags(regions, tags)
    future = in_thread(lambda: run_job(ONE_RUN_JOB, None, range_tags))
    try:
        whole = _await_runs({future: ONE_RUN_JOB}, on_done, on_poll, poll_seconds)[ONE_RUN_JOB]
    except BaseException:
        end_own_runs()  # Ctrl-C or SIGTERM: the run's thread dies with this process
        raise
    if whole.success:
        each = [RunOutcome(region, whole.run_id, True) for region in regions]
        return FleetOutcome(each, RunOutcome("regional_report", whole.run_id, True), whole)
    if reads_as_disk_full(whole.error):  # every region would fill it again
        return FleetOutcome([], None, whole)
    again = run_fleet(
        regions, parallel, tags=tags, on_done=on_done,
        on_poll=on_poll, poll_seconds=poll_seconds, pool=pool,
    )  # fmt: skip
    return FleetOutcome(again.regions, again.report, whole)
