"""Runs whose process is gone, and the pool slots they still hold.

A `sentinel` run executes in a local worker process. Killed (SIGKILL, out of memory, a
power cut), it leaves its run STARTED in the instance and keeps its `duckdb_catalog` slot,
so every later report step would wait for that slot forever. Each run is tagged with the pid
and host of its process; a run whose process is gone is marked failed and its slots freed
(`sweep_dead_runs`, at the start of every `sentinel demo` and by `sentinel free-slots`), and a
step that has waited long for a slot is told which run holds it (`slot_waits`).
"""

import os
import socket
import time
from collections.abc import Iterable
from datetime import UTC
from pathlib import Path

import dagster as dg

PID_TAG = "sentinel/pid"
HOST_TAG = "sentinel/host"
# The auto re-execution daemon relaunches a failed run; a swept demo run is rerun by the user.
WILL_RETRY_TAG = "dagster/will_retry"
UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
FREE_COMMAND = "sentinel free-slots"


def process_tags() -> dict[str, str]:
    """The tags that tie a run to the process executing it."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _process_started_at(pid: int) -> float | None:
    """When process `pid` started (its /proc entry's time), or None when there is none."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        return Path(f"/proc/{pid}").stat().st_ctime
    except OSError:
        return 0.0  # alive; no /proc to tell a reused pid apart


def process_gone(run: dg.DagsterRun, started_at: float | None) -> bool:
    """True when the run's tagged process on this host no longer exists; a pid reused by a
    process that started after the run is gone too."""
    pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
    if not pid or not pid.isdigit() or host != socket.gethostname():
        return False
    process_start = _process_started_at(int(pid))
    if process_start is None:
        return True
    return started_at is not None and process_start > started_at + 1


def dead_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    """Unfinished runs of this host whose process is gone."""
    records = instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED))
    return [
        record
        for record in records
        if process_gone(
            record.dagster_run, record.start_time or record.create_timestamp.timestamp()
        )
    ]


def end_run(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Mark a run that cannot go on failed (not to be retried) and free its pool slots."""
    instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
    instance.report_run_failed(run, message=message)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def end_runs_of_this_process(instance: dg.DagsterInstance, why: str) -> list[str]:
    """End the unfinished runs this process executes itself (in its own threads), when it is
    about to exit; returns their run ids."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=UNFINISHED, tags={PID_TAG: str(os.getpid())})
    )
    for record in records:
        end_run(instance, record.dagster_run, why)
    return [record.dagster_run.run_id for record in records]


def sweep_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark every dead run failed and free its pool slots; one line per run swept."""
    swept = []
    for record in dead_runs(instance):
        run = record.dagster_run
        pid = run.tags[PID_TAG]
        end_run(instance, run, f"Marked failed by {FREE_COMMAND}: its process {pid} is gone.")
        swept.append(
            f"Run {run.run_id[:8]} ({run.job_name}"
            f"{' ' + run.tags['dagster/partition'] if 'dagster/partition' in run.tags else ''})"
            f" was left unfinished by process {pid}, which is gone: marked failed, its pool "
            "slots freed."
        )
    return swept


def _holder(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"run {run_id[:8]} (deleted)"
    where = f"process {run.tags[PID_TAG]}" if PID_TAG in run.tags else "no process tag"
    return f"run {run_id[:8]} ({run.job_name}, {run.status.value}, {where})"


def slot_waits(
    instance: dg.DagsterInstance, pools: Iterable[str], waited_s: float, now: float | None = None
) -> list[str]:
    """One sentence per step that has waited more than `waited_s` for a pool slot, naming
    the runs holding the pool's slots and how to free them."""
    now = time.time() if now is None else now
    found = []
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        holders = sorted({slot.run_id for slot in info.claimed_slots})
        for step in info.pending_steps:
            if step.assigned_timestamp is not None or step.run_id in holders:
                continue
            enqueued = step.enqueued_timestamp
            if enqueued.tzinfo is None:
                enqueued = enqueued.replace(tzinfo=UTC)
            waited = now - enqueued.timestamp()
            if waited < waited_s:
                continue
            held_by = ", ".join(_holder(instance, run_id) for run_id in holders) or "nobody"
            found.append(
                f"Step {step.step_key} of run {step.run_id[:8]} has waited {waited:.0f} s for "
                f"the {pool} slot, held by {held_by}. If that run's process is gone, "
                f"`{FREE_COMMAND}` frees it; if it is stuck, end it (Terminate in the UI)."
            )
    return found


class SlotWaitNotices:
    """Called on every progress poll: at most every `every_s`, the sentences of
    `slot_waits` not said before, so a waiting step is named once, never silently."""

    def __init__(
        self, instance: dg.DagsterInstance, pools: Iterable[str], waited_s: float, every_s=5.0
    ):
        self.instance, self.pools, self.waited_s, self.every_s = (
            instance, tuple(pools), waited_s, every_s
        )  # fmt: skip
        self.said: set[str] = set()
        self.checked_at = 0.0

    def __call__(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        if now - self.checked_at < self.every_s:
            return []
        self.checked_at = now
        new = []
        for sentence in slot_waits(self.instance, self.pools, self.waited_s, now):
            key = sentence.split(" has waited")[0]
            if key not in self.said:
                self.said.add(key)
                new.append(sentence)
        return new
