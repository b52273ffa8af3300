"""The pipeline as `sentinel demo` runs it, plus where its time went.

`run_pipeline` calls the same code as `sentinel demo` (`sentinel_assets.cli.orchestrate`): up
to 2M devices one `fleet_and_reports` run over every region in this process, else (or with
`--runs per-region`) one `fleet_refresh` run per region, `parallel` worker processes at a
time, then the `regional_report` job; every run `execute_in_process` against the
`DAGSTER_HOME` instance.
`stage_breakdown` reads the runs' step events back from that instance: seconds per step, how
much of each step loaded inputs, stored outputs or ran checks, and seconds per check (each
check records its own `check_seconds`, since checks run inside the step of their asset).

Run it in a fresh interpreter so start-up is measured too (this is what `benchmarks.run`
does)::

    SENTINEL_HOME=/tmp/p DAGSTER_HOME=/tmp/p/dagster SENTINEL_DEVICES_PER_REGION=125000 \
        python -m benchmarks.pipeline --parallel 2 --json /tmp/p/result.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import REPO, emit_result
from sentinel_assets.contracts import REGIONS

PHASES = ("seconds", "load", "store", "checks", "compute")
LOCK_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


def run_pipeline(regions: Sequence[str], parallel: int, runs: str = "auto") -> dict[str, Any]:
    """Materialize `regions`, then the report, as the CLI does: in one run, or one run per
    region `parallel` at a time, as `sentinel demo --runs` decides."""
    from sentinel_assets.cli.orchestrate import one_run_wanted, run_fleet
    from sentinel_assets.defs.config import devices_per_region

    started = time.perf_counter()
    one_run = one_run_wanted(runs, regions, devices_per_region())
    fleet = run_fleet(list(regions), parallel, one_run=one_run)  # `sentinel demo`'s own call
    outcomes, report = fleet.regions, fleet.report
    finished = time.perf_counter()
    runs = [*outcomes, *([report] if report else [])]
    return {
        "success": report is not None and report.success,
        "seconds": finished - started,
        "one_run": one_run,
        "runs": [
            {"label": o.label, "run_id": o.run_id, "success": o.success, "error": o.error}
            for o in runs
        ],
    }


def _check_seconds(event: Any) -> float:
    value = event.asset_check_evaluation_data.metadata.get("check_seconds")
    return float(value.value) if value is not None else 0.0


def _step_phases(events: list[Any]) -> dict[str, dict[str, float]]:
    """Per step key: total, load (inputs), store (outputs), checks, compute (the rest), in
    seconds."""
    from dagster import DagsterEventType as E

    steps: dict[str, dict[str, float]] = {}
    state: dict[str, dict[str, float]] = defaultdict(dict)
    for entry in events:
        event, key, ts = entry.dagster_event, entry.step_key, entry.timestamp
        if event is None or key is None:
            continue
        kind, s = event.event_type, state[key]
        if kind == E.STEP_START:
            s.update(start=ts, last=ts, load=0.0, store=0.0, checks=0.0)
        elif kind == E.LOADED_INPUT and "start" in s:
            s["load"] += ts - s["last"]
            s["last"] = ts
        elif kind == E.STEP_OUTPUT:
            s["last"] = ts
        elif kind == E.HANDLED_OUTPUT and "start" in s:
            s["store"] += ts - s["last"]
            s["last"] = ts
        elif kind == E.STEP_INPUT:
            s["last"] = ts
        elif kind == E.ASSET_CHECK_EVALUATION and "start" in s:
            s["checks"] += _check_seconds(event)
        elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE) and "start" in s:
            total = ts - s["start"]
            steps[key] = {
                "seconds": total,
                "load": s["load"],
                "store": s["store"],
                "checks": s["checks"],
                "compute": max(0.0, total - s["load"] - s["store"] - s["checks"]),
                "failed": float(kind == E.STEP_FAILURE),
            }
    return steps


def stage_breakdown(run_ids: Sequence[str]) -> dict[str, Any]:
    """Seconds per step (summed over runs), per run, and lock trouble, from the instance."""
    import dagster as dg
    from dagster import DagsterEventType as E

    per_step: dict[str, dict[str, float]] = {}
    per_check: dict[str, dict[str, float]] = {}
    runs, lock_messages, step_failures, retries = [], 0, 0, 0
    with dg.DagsterInstance.get() as instance:
        for run_id in run_ids:
            record = instance.get_run_record_by_id(run_id)
            events = list(instance.all_logs(run_id))
            steps = _step_phases(events)
            step_failures += sum(1 for e in events if e.dagster_event_type == E.STEP_FAILURE)
            retries += sum(1 for e in events if e.dagster_event_type == E.STEP_UP_FOR_RETRY)
            lock_messages += sum(
                1
                for e in events
                if any(marker in (e.user_message or "").lower() for marker in LOCK_MARKERS)
            )
            created = record.create_timestamp.timestamp() if record else None
            runs.append(
                {
                    "run_id": run_id,
                    "job": record.dagster_run.job_name if record else None,
                    "partition": record.dagster_run.tags.get("dagster/partition")
                    if record
                    else None,
                    "created": created,
                    "start": record.start_time if record else None,
                    "end": record.end_time if record else None,
                    "seconds": (record.end_time - created) if record and record.end_time else None,
                    "steps_seconds": sum(s["seconds"] for s in steps.values()),
                    "events": len(events),
                }
            )
            for key, phases in steps.items():
                total = per_step.setdefault(key, dict.fromkeys((*PHASES, "runs"), 0.0))
                for phase in PHASES:
                    total[phase] += phases[phase]
                total["runs"] += 1
            for entry in events:
                if entry.dagster_event_type == E.ASSET_CHECK_EVALUATION:
                    evaluation = entry.dagster_event.asset_check_evaluation_data
                    check = per_check.setdefault(
                        evaluation.asset_check_key.to_user_string(),
                        {"seconds": 0.0, "runs": 0, "failed": 0, "step": entry.step_key},
                    )
                    check["seconds"] += _check_seconds(entry.dagster_event)
                    check["runs"] += 1
                    check["failed"] += int(not evaluation.passed)
    return {
        "steps": dict(sorted(per_step.items(), key=lambda kv: -kv[1]["seconds"])),
        "checks": dict(sorted(per_check.items(), key=lambda kv: -kv[1]["seconds"])),
        "runs": runs,
        "step_failures": step_failures,
        "step_retries": retries,
        "lock_messages": lock_messages,
    }


def install_instance_yaml(dagster_home: Path, source: Path | None) -> None:
    """What `make instance` does: the repo's dagster.yaml into `DAGSTER_HOME`."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    if source is not None and source.exists():
        shutil.copyfile(source, dagster_home / "dagster.yaml")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--runs", default="auto", help="as `sentinel demo --runs`")
    parser.add_argument("--regions", default=",".join(REGIONS))
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    parser.add_argument(
        "--instance-yaml",
        default=str(REPO / "dagster.yaml"),
        help="copied into $DAGSTER_HOME first, as `make instance` does ('' to skip)",
    )
    args = parser.parse_args(argv)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    install_instance_yaml(dagster_home, Path(args.instance_yaml) if args.instance_yaml else None)
    result: dict[str, Any] = {"started_at": time.time()}
    result |= run_pipeline(args.regions.split(","), args.parallel, args.runs)
    result["finished_at"] = time.time()
    # A one-run refresh reports the same run for every region and the report: count it once.
    run_ids = dict.fromkeys(r["run_id"] for r in result["runs"] if r["run_id"])
    result["breakdown"] = stage_breakdown(list(run_ids))
    emit_result(result, args.json)


if __name__ == "__main__":
    main()
