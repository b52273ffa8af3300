"""Experiment: what the region asset checks cost as separate Dagster steps.

Runs all 8 regions twice, as `sentinel demo` does (a pool of `--parallel` worker processes, one
`execute_in_process` run per region against a fresh instance): once with `fleet_refresh` as
defined (every asset and its checks) and once with the same assets and no checks. It also
times the contract checks' own work in one process on in-memory frames. The difference
between the two pipeline timings, less that work, is what running checks as their own steps
costs (step start-up, Dagster events, re-reading each input from Parquet): the saving to
expect from running them inside the asset steps (`check_specs`) instead.
`--sqlite-sync-normal` adds both runs again with Dagster's SQLite storage not waiting for an
fsync per event (`PRAGMA synchronous=NORMAL`).

    python -m benchmarks.checks_cost --devices 1m [--sqlite-sync-normal]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.measure import N_REGIONS, REPO, parse_size, run_child, size_label

UNCHECKED_JOB = "fleet_refresh_without_checks"
SYNC_ENV = "SENTINEL_BENCH_SQLITE_SYNC"


def _relax_sqlite_sync() -> None:
    """Experiment: `PRAGMA synchronous=NORMAL` on every SQLite connection of this process
    (WAL stays consistent, a commit no longer waits for fsync), i.e. Dagster's run and event
    storage. Dagster has no setting for it, so this is a process-wide SQLAlchemy hook."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _sync_normal(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _run_region(job_name: str, region: str) -> tuple[str, bool]:
    import dagster as dg

    if os.environ.get(SYNC_ENV) == "NORMAL" and not getattr(_run_region, "relaxed", False):
        _relax_sqlite_sync()
        _run_region.relaxed = True  # type: ignore[attr-defined]

    from sentinel_assets.definitions import defs
    from sentinel_assets.defs.partitions import region_partitions
    from sentinel_assets.orchestrate import QUIET_LOGS

    if job_name == UNCHECKED_JOB:
        unchecked = dg.define_asset_job(
            UNCHECKED_JOB,
            selection=dg.AssetSelection.groups("fleet").without_checks(),
            partitions_def=region_partitions,
        )
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[unchecked]))
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job_name).execute_in_process(
            partition_key=region, instance=instance, run_config=QUIET_LOGS, raise_on_error=False
        )
    return result.run_id, result.success


def run_regions(job_name: str, parallel: int) -> dict[str, Any]:
    """Child-process entry: every region through `job_name`, `parallel` at a time."""
    from sentinel_assets.contracts import REGIONS
    from sentinel_assets.orchestrate import prepare_instance_home

    prepare_instance_home()
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=spawn) as pool:
        results = list(pool.map(_run_region, [job_name] * len(REGIONS), REGIONS))
    return {
        "seconds": time.perf_counter() - started,
        "success": all(ok for _, ok in results),
        "finished_at": time.time(),
    }


def check_work(devices_per_region: int) -> dict[str, float]:
    """Seconds of the contract checks' own work for one region, on in-memory frames."""
    from sentinel_assets.chaos import inject_faults
    from sentinel_assets.contracts import ASSET_CONTRACTS, check_contract
    from sentinel_assets.defs.config import region_seed
    from sentinel_assets.defs.resources import SentinelSettings
    from sentinel_assets.generate import generate_fleet
    from sentinel_assets.outcomes import simulate_outcomes
    from sentinel_assets.recovery import campaign_health, decide_recovery
    from sentinel_assets.sanitize import split_fleet

    settings = SentinelSettings()
    sim, region = settings.simulation, "af-south"
    policy, as_of = settings.recovery.policy(), sim.as_of_utc()
    raw = generate_fleet(
        region, devices_per_region, seed=sim.seed, as_of=as_of, profile=sim.profile()
    )
    corrupted, ledger = inject_faults(
        raw, settings.chaos.rates, seed=region_seed(settings.chaos.seed, region)
    )
    sanitized, quarantine = split_fleet(corrupted, region)
    decisions = decide_recovery(sanitized, policy, as_of=as_of)
    frames = {
        "raw_fleet": raw,
        "corrupted_fleet": corrupted,
        "chaos_ledger": ledger,
        "sanitized_fleet": sanitized,
        "quarantine": quarantine,
        "recovery_decisions": decisions,
        "campaign_status": campaign_health(sanitized, policy),
        "recovery_outcomes": simulate_outcomes(sanitized, decisions, seed=sim.seed),
    }
    seconds = {}
    for asset, frame in frames.items():
        if asset in ASSET_CONTRACTS:
            start = time.perf_counter()
            check_contract(frame, ASSET_CONTRACTS[asset])
            seconds[asset] = time.perf_counter() - start
    return seconds


def measure(
    devices: int, parallel: int, workdir: Path, sqlite_sync: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": devices, "parallel": parallel}
    variants = [("with_checks", "fleet_refresh", ""), ("without_checks", UNCHECKED_JOB, "")]
    if sqlite_sync:
        variants += [
            ("with_checks_sync_normal", "fleet_refresh", "NORMAL"),
            ("without_checks_sync_normal", UNCHECKED_JOB, "NORMAL"),
        ]
    for label, job, sync in variants:
        home = workdir / f"checks-{label}"
        result_json = workdir / f"checks-{label}.json"
        env = {
            "SENTINEL_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "SENTINEL_DEVICES_PER_REGION": str(devices // N_REGIONS),
            SYNC_ENV: sync,
        }
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        args = ["-m", "benchmarks.checks_cost", "--child", job, "--parallel", str(parallel)]
        args += ["--json", str(result_json)]
        m = run_child(f"checks-{label}", devices, args, workdir, env, result_json)
        out[label] = {"seconds": m.seconds, "ok": m.ok, "peak_rss_gib": m.peak_rss_gib}
    work = check_work(devices // N_REGIONS)
    out["contract_work_per_region"] = work
    out["contract_work_all_regions"] = sum(work.values()) * N_REGIONS
    out["checks_as_steps_seconds"] = (
        out["with_checks"]["seconds"] - out["without_checks"]["seconds"]
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1m")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument(
        "--sqlite-sync-normal",
        action="store_true",
        help="also run both with PRAGMA synchronous=NORMAL on Dagster's SQLite storage",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_regions(args.child, args.parallel)
        args.json.write_text(json.dumps(result))
        return 0 if result["success"] else 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-checks-"))
    os.environ.setdefault("PYTHONPATH", str(REPO))
    result = measure(parse_size(args.devices), args.parallel, workdir, args.sqlite_sync_normal)
    timings = ", ".join(
        f"{label} {value['seconds']:.1f} s"
        for label, value in result.items()
        if isinstance(value, dict) and "seconds" in value
    )
    print(
        f"{size_label(result['devices'])} devices, --parallel {args.parallel}: {timings}; "
        f"contract work {result['contract_work_all_regions']:.1f} s",
        file=sys.stderr,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
