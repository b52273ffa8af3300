"""Progress of a `sentinel demo`, read from Dagster's own records, never kept a second time.

Every run of one demo carries the tag `sentinel/demo_id`; a region's run also carries
`dagster/partition`. A snapshot reads those run records from the instance, then each run's
new event records (step starts and failures, materializations, check evaluations) after a
cursor, and folds them into one `RegionProgress` per run: exactly what the UI shows.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import dagster as dg
from dagster import DagsterEventType as E

from sentinel_assets.defs.partitions import PARTITION_TAG

DEMO_TAG = "sentinel/demo_id"
# The first of these a materialization carries is its row count (our shards set all three).
ROW_COUNT_KEYS = ("dagster/row_count", "devices", "records")
WATCHED_EVENTS = frozenset(
    {
        E.STEP_START,
        E.STEP_FAILURE,
        E.ASSET_MATERIALIZATION,
        E.ASSET_CHECK_EVALUATION,
    }
)


class State(StrEnum):
    """Where a region's run is, in the words of the terminal view."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


RUN_STATES: Mapping[dg.DagsterRunStatus, State] = {
    dg.DagsterRunStatus.QUEUED: State.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED: State.QUEUED,
    dg.DagsterRunStatus.STARTING: State.QUEUED,
    dg.DagsterRunStatus.MANAGED: State.QUEUED,
    dg.DagsterRunStatus.STARTED: State.RUNNING,
    dg.DagsterRunStatus.SUSPENDED: State.RUNNING,
    dg.DagsterRunStatus.CANCELING: State.RUNNING,
    dg.DagsterRunStatus.SUCCESS: State.DONE,
    dg.DagsterRunStatus.FAILURE: State.FAILED,
    dg.DagsterRunStatus.CANCELED: State.FAILED,
}


@dataclass(frozen=True)
class RegionProgress:
    """One line of the view: a region's run (or the report run) as its records tell it."""

    label: str
    state: State = State.QUEUED
    run_id: str = ""
    step: str = ""  # the step running now (its checks run inside it)
    rows: int = 0
    seconds: float = 0.0
    checks_passed: int = 0
    failed_checks: tuple[str, ...] = ()
    failed_steps: tuple[str, ...] = ()
    error: str = ""

    @property
    def checks_failed(self) -> int:
        return len(self.failed_checks)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def rows_of(metadata: Mapping[str, dg.MetadataValue]) -> int:
    """Rows a materialization wrote, from the first row-count entry it carries (else 0)."""
    for key in ROW_COUNT_KEYS:
        value = metadata.get(key)
        if value is not None and isinstance(value.value, int):
            return value.value
    return 0


def progress_from_records(
    label: str,
    records: Iterable[dg.EventLogRecord],
    *,
    status: dg.DagsterRunStatus,
    run_id: str = "",
    started_at: float | None = None,
    finished_at: float | None = None,
    now: float,
) -> RegionProgress:
    """Fold a run's event records (in storage order) and its status into one snapshot."""
    step, rows, passed = "", 0, 0
    failed_checks: list[str] = []
    failed_steps: list[str] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind is E.STEP_START:
            step = event.step_key or ""
        elif kind is E.STEP_FAILURE:
            failed_steps.append(event.step_key or "")
        elif kind is E.ASSET_MATERIALIZATION:
            rows += rows_of(event.step_materialization_data.materialization.metadata)
        elif kind is E.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if evaluation.passed:
                passed += 1
            else:
                failed_checks.append(evaluation.asset_check_key.to_user_string())
    state = RUN_STATES.get(status, State.QUEUED)
    seconds = max(0.0, (finished_at or now) - started_at) if started_at else 0.0
    if state is State.DONE:
        step = ""
    elif failed_steps:
        step = failed_steps[0]
    return RegionProgress(
        label=label,
        state=state,
        run_id=run_id,
        step=step,
        rows=rows,
        seconds=seconds,
        checks_passed=passed,
        failed_checks=tuple(failed_checks),
        failed_steps=tuple(failed_steps),
    )


def with_error(progress: RegionProgress, error: str) -> RegionProgress:
    """A run whose worker died never records its end: the worker's error makes it failed."""
    if not error or progress.state in (State.DONE, State.FAILED):
        return progress
    return replace(progress, state=State.FAILED, error=error)


def run_label(run: dg.DagsterRun) -> str:
    """A region run is named by its partition, the report run by its job."""
    return run.tags.get(PARTITION_TAG) or run.job_name


class DemoProgress:
    """Snapshots of one demo's runs; each poll reads only the event records added since."""

    def __init__(self, instance: dg.DagsterInstance, demo_id: str, labels: Sequence[str]):
        self.instance = instance
        self.demo_id = demo_id
        self.labels = list(labels)
        self.errors: dict[str, str] = {}
        self._records: dict[str, list[dg.EventLogRecord]] = {}
        self._cursors: dict[str, str | None] = {}
        self._complete: set[str] = set()

    def latest_runs(self) -> dict[str, dg.RunRecord]:
        """The newest run of each label among the runs tagged with this demo's id."""
        records = self.instance.get_run_records(dg.RunsFilter(tags={DEMO_TAG: self.demo_id}))
        latest: dict[str, dg.RunRecord] = {}
        for record in sorted(records, key=lambda r: r.storage_id):
            latest[run_label(record.dagster_run)] = record
        return latest

    def _read_new(self, run_id: str) -> list[dg.EventLogRecord]:
        if run_id not in self._complete:
            connection = self.instance.get_records_for_run(
                run_id, cursor=self._cursors.get(run_id), of_type=set(WATCHED_EVENTS)
            )
            self._records.setdefault(run_id, []).extend(connection.records)
            self._cursors[run_id] = connection.cursor
        return self._records.get(run_id, [])

    def snapshot(self, now: float) -> list[RegionProgress]:
        """Every expected label (queued until its run exists), then any other run of the demo."""
        runs = self.latest_runs()
        labels = self.labels + [label for label in runs if label not in self.labels]
        return [self._progress(label, runs.get(label), now) for label in labels]

    def _progress(self, label: str, record: dg.RunRecord | None, now: float) -> RegionProgress:
        if record is None:
            return with_error(RegionProgress(label), self.errors.get(label, ""))
        run = record.dagster_run
        records = self._read_new(run.run_id)
        if run.is_finished:  # read after the status: no record can come after this read
            self._complete.add(run.run_id)
        progress = progress_from_records(
            label,
            records,
            status=run.status,
            run_id=run.run_id,
            started_at=record.start_time,
            finished_at=record.end_time,
            now=now,
        )
        return with_error(progress, self.errors.get(label, ""))
