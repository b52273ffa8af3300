"""Scale-out overhead on one machine (issue 13): the production profile against the embedded one.

* refresh - the 8-region `fleet_refresh` through the production profile (PostgreSQL instance,
  the daemon's run queue, steps on 2 Celery workers with a Redis broker, `dagster job
  backfill` as an operator would launch it) against the embedded run (`sentinel demo
  --parallel 2`, `benchmarks.measure.measure_pipeline`), both on local Parquet shards so the
  ratio is the orchestration alone. Seconds from the launching command to the end of the last
  region run (the embedded run's report run is not counted; the production report run is
  started by a sensor afterwards and is not counted either).
* write path - every shard the pipeline writes, at one size, written three ways from the same
  frames in one process (`benchmarks.limit` with sinks): local Parquet (the embedded
  default), a Delta table on local disk, and a Delta table on the S3 emulator (moto).

The servers are the test suite's throwaway ones (`sentinel_assets_tests/servers.py`), started
on 127.0.0.1 and stopped afterwards. Both workers, the daemon and its run processes share the
same 2 cores as the embedded run: distribution buys machines, not speed on one.

    python -m benchmarks.scaleout --sizes 1m                    # ~5 min on 2 cores
    python -m benchmarks.scaleout --sizes 1m,10m --write-size 10m   # ~35 min, ~10 GiB
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.measure import (
    N_REGIONS,
    REPO,
    emit_result,
    measure_pipeline,
    parse_size,
    run_child,
    size_label,
    targets_table,
)
from benchmarks.procmem import PeakRSS, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "scaleout_results.json"
BIN = Path(sys.executable).parent
CELERY_YAML = REPO / "deploy" / "production" / "celery.yaml"
INSTANCE_YAML = REPO / "deploy" / "production" / "dagster.yaml"
WORKERS = 2
# The aim: the distributed refresh within 1.5x of the embedded one at 10M devices.
TARGET_RATIO = 1.5
TARGET_SIZE = 10_000_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def servers() -> Iterator[tuple[Any, Any]]:
    """Throwaway PostgreSQL and Redis (the test suite's), stopped on exit."""
    from sentinel_assets_tests.servers import running_postgres, running_redis

    with running_postgres() as postgres, running_redis() as redis:
        yield postgres, redis


def _start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.5)


def measure_celery(devices: int, workdir: Path, postgres: Any, redis: Any) -> dict[str, Any]:
    """The 8-region refresh through the daemon's queue and 2 Celery workers, on a fresh
    instance database and data folder."""
    import dagster as dg

    from sentinel_assets.contracts import REGIONS

    label = size_label(devices)
    home = workdir / f"celery-{label}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    shutil.copy(INSTANCE_YAML, home / "dagster" / "dagster.yaml")
    database = f"bench_{label}"
    postgres.query(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", db="postgres")
    postgres.query(f"CREATE DATABASE {database}", db="postgres")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # workers exec `celery`
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **postgres.env(),
        "SENTINEL_PG_DAGSTER_DB": database,
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SENTINEL_DEVICES_PER_REGION": str(devices // N_REGIONS),
        "SENTINEL_EXECUTOR": "celery",
        "SENTINEL_CELERY_BROKER": redis.url(0),
        "SENTINEL_CELERY_BACKEND": redis.url(1),
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs = {f"w{i}": workdir / f"celery-{label}-w{i}.log" for i in range(1, WORKERS + 1)}
    saved = dict(os.environ)
    try:
        os.environ.update({k: env[k] for k in (*postgres.env(), "DAGSTER_HOME")})
        os.environ["SENTINEL_PG_DAGSTER_DB"] = database
        # The schema first: processes that all find an empty database race to create it.
        with dg.DagsterInstance.get():
            pass
        for name, path in logs.items():
            procs.append(
                _start(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(CELERY_YAML), "-n", f"{name}@bench", "--", "--concurrency=1",
                     "--without-gossip", "--without-mingle"],
                    env, path,
                )
            )  # fmt: skip
        procs.append(
            _start(
                [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                env,
                workdir / f"celery-{label}-daemon.log",
            )
        )
        # Long-lived in production: their start-up is not part of the refresh.
        _wait_for(
            lambda: all(p.exists() and b" ready." in p.read_bytes() for p in logs.values()),
            120,
            "the Celery workers' start",
        )
        load_before = os.getloadavg()[0]
        with PeakRSS(interval=0.5) as memory, dg.DagsterInstance.get() as instance:
            launched = time.time()
            subprocess.run(
                [str(BIN / "dagster"), "job", "backfill", "-w", "workspace.yaml", "-j",
                 "fleet_refresh", "--partitions", ",".join(REGIONS), "--noprompt"],
                cwd=REPO, env=env, check=True, capture_output=True,
            )  # fmt: skip
            fleet = dg.RunsFilter(job_name="fleet_refresh")

            def finished() -> bool:
                runs = instance.get_runs(fleet)
                return len(runs) == len(REGIONS) and all(r.is_finished for r in runs)

            _wait_for(finished, 4 * 3600, "the 8 region runs")
            records = instance.get_run_records(fleet)
        seconds = max(r.end_time for r in records if r.end_time) - launched
        return {
            "seconds": seconds,
            "runs": len(records),
            "runs_ok": sum(r.dagster_run.is_success for r in records),
            # Workers, daemon, run processes, PostgreSQL and Redis together.
            "peak_rss_gib": memory.peak_gib,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for proc in procs:
            _stop(proc)
        shutil.rmtree(home, ignore_errors=True)


def embedded_regions(devices: int, workdir: Path) -> dict[str, Any]:
    """The embedded `sentinel demo --parallel 2 --runs per-region`: launch to the end of the
    last region run. One run per region, as the Celery side runs them: since the one-run
    refresh (`--runs auto` picks it up to 2M devices) there was no `fleet_refresh` run to
    time at 1M and this measured nothing (NaN)."""
    m = measure_pipeline(devices, 2, workdir, runs="per-region")
    runs = m.result.get("breakdown", {}).get("runs", [])
    ends = [r["end"] for r in runs if r.get("job") == "fleet_refresh" and r.get("end")]
    launched = m.result.get("finished_at", 0.0) - m.seconds
    return {
        "seconds": (max(ends) - launched) if ends else float("nan"),
        "with_report_seconds": m.seconds,
        "runs": len(ends),
        "runs_ok": sum(
            1 for r in m.result.get("runs", []) if r.get("success") and r["label"] != "report"
        ),
        "ok": m.ok,
        "peak_rss_gib": m.peak_rss_gib,
        "load_before": m.load_before,
        "load_after": m.load_after,
    }


# --- the write path (run in a child process) ----------------------------------------------


def subject_write_path(devices: int, home: Path) -> dict[str, Any]:
    """The limit's shards, each also written as a Delta partition, locally and on S3."""
    from benchmarks.limit import run_limit
    from sentinel_assets import delta
    from sentinel_assets.contracts import REGIONS

    options = delta.storage_options()
    s3_root = os.environ["SENTINEL_DELTA_ROOT"]
    local_root = str(home / "delta")

    def sink(root: str, opts: dict[str, str] | None):
        return lambda table, frame, region: delta.write_region(
            frame, delta.table_uri(root, table), region, opts
        )

    sinks = {"delta_local": sink(local_root, None), "delta_s3": sink(s3_root, options)}
    result = run_limit(REGIONS, devices // N_REGIONS, home, sinks=sinks, reports=False)
    stages = result["stages"]
    sizes = {"parquet": home / "tables", "delta_local": home / "delta"}
    return {
        "seconds": {
            "parquet": stages["write"],
            "delta_local": stages["write_delta_local"],
            "delta_s3": stages["write_delta_s3"],
        },
        "mib": {
            name: sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 2**20
            for name, folder in sizes.items()
        },
        "rows": sum(result["rows"].values()),
    }


def measure_write_path(devices: int, workdir: Path) -> dict[str, Any]:
    from sentinel_assets_tests.servers import running_s3

    label = size_label(devices)
    home = workdir / f"write-{label}"
    shutil.rmtree(home, ignore_errors=True)
    out = workdir / f"write-{label}.json"
    with running_s3() as s3:
        s3.create_bucket("sentinel")
        env = {**s3.env(), "SENTINEL_DELTA_ROOT": f"s3://sentinel/bench-{label}"}
        args = ["-m", "benchmarks.scaleout", "--subject", "write-path", "--devices", str(devices)]
        m = run_child("write-path", devices, [*args, "--home", str(home), "--json", str(out)],
                      workdir, env, out)  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
    entry = {**m.result, "ok": m.ok, "load_before": m.load_before, "load_after": m.load_after}
    if not m.ok:
        entry["log"] = m.log
    return entry


# --- the comparison ---------------------------------------------------------------------


def compare(sizes: Sequence[int], write_size: int | None, workdir: Path, log=log) -> dict[str, Any]:
    result: dict[str, Any] = {"refresh": {}, "write_path": None, "workers": WORKERS}
    if sizes:
        with ExitStack() as stack:
            postgres, redis = stack.enter_context(servers())
            for devices in sorted(sizes):
                label = size_label(devices)
                embedded = embedded_regions(devices, workdir)
                log(f"scale-out {label:>5}: embedded {embedded['seconds']:.1f} s")
                celery = measure_celery(devices, workdir, postgres, redis)
                log(f"scale-out {label:>5}: Celery x{WORKERS} {celery['seconds']:.1f} s")
                result["refresh"][label] = {
                    "devices": devices,
                    "embedded": embedded,
                    "celery": celery,
                    "ratio": celery["seconds"] / embedded["seconds"],
                    "ok": embedded["ok"] and celery["runs_ok"] == celery["runs"] == N_REGIONS,
                }
    if write_size:
        entry = measure_write_path(write_size, workdir)
        entry["devices"] = write_size
        if entry["ok"]:
            s = entry["seconds"]
            entry["s3_vs_parquet"] = s["delta_s3"] / s["parquet"]
            entry["delta_local_vs_parquet"] = s["delta_local"] / s["parquet"]
            log(f"write path {size_label(write_size)}: {s}")
        result["write_path"] = entry
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    at_target = [e for e in result["refresh"].values() if e["devices"] == TARGET_SIZE]
    if not at_target:
        return {}
    ratio = at_target[0]["ratio"]
    name = f"Celery x{WORKERS} / embedded refresh at {size_label(TARGET_SIZE)}"
    return {name: {"limit": TARGET_RATIO, "measured": ratio, "met": ratio <= TARGET_RATIO}}


def render(result: dict[str, Any]) -> str:
    lines = [
        "Scale-out on one machine: 8-region refresh, launch to the last region run's end, "
        f"embedded (`--parallel 2`) vs the production profile (PostgreSQL instance, run queue, "
        f"{result['workers']} Celery workers, Redis), both on local Parquet:",
        "",
        "| devices | embedded s | Celery s | Celery / embedded | embedded peak RSS | "
        "production peak RSS | load avg before/after | measured |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, e in sorted(result["refresh"].items(), key=lambda kv: kv[1]["devices"]):
        emb, cel = e["embedded"], e["celery"]
        lines.append(
            f"| {label} | {emb['seconds']:.1f} | {cel['seconds']:.1f} | {e['ratio']:.2f}x | "
            f"{emb['peak_rss_gib']:.2f} GiB | {cel['peak_rss_gib']:.2f} GiB | "
            f"{emb['load_before']:.1f}/{cel['load_after']:.1f} | {e.get('measured_at', '-')} |"
        )
    w = result.get("write_path")
    if w and w.get("ok"):
        s, mib = w["seconds"], w["mib"]
        lines += [
            "",
            f"Write path at {size_label(w['devices'])} devices: every shard of the 8 region "
            f"tables ({w['rows']:,} rows), written from the same frames "
            f"({w.get('measured_at', '-')}, load {w['load_before']:.1f}/{w['load_after']:.1f}):",
            "",
            "| sink | seconds | vs local Parquet | MiB |",
            "|---|---:|---:|---:|",
            f"| local Parquet (embedded default) | {s['parquet']:.1f} | 1.00x | "
            f"{mib['parquet']:,.0f} |",
            f"| Delta Lake, local folder | {s['delta_local']:.1f} | "
            f"{w['delta_local_vs_parquet']:.2f}x | {mib['delta_local']:,.0f} |",
            f"| Delta Lake, S3 emulator (moto) | {s['delta_s3']:.1f} | "
            f"{w['s3_vs_parquet']:.2f}x | - |",
        ]
    if result.get("targets"):
        lines += ["", *targets_table(result["targets"])]
    return "\n".join(lines) + "\n"


def merge(previous: dict[str, Any] | None, new: dict[str, Any], run_id: str) -> dict[str, Any]:
    """New measurements stamped with `run_id`; sizes measured earlier and not now are kept."""
    merged = {"refresh": dict((previous or {}).get("refresh", {})), "workers": new["workers"]}
    for label, entry in new["refresh"].items():
        merged["refresh"][label] = {**entry, "measured_at": run_id}
    merged["write_path"] = (previous or {}).get("write_path")
    if new.get("write_path"):
        merged["write_path"] = {**new["write_path"], "measured_at": run_id}
    merged["targets"] = targets(merged)
    return merged


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout")
    parser.add_argument("--sizes", default="1m", help="fleets for the refresh (default 1m)")
    parser.add_argument(
        "--write-size", default="1m", help="fleet for the write path ('' to skip; default 1m)"
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    # Internal: the write-path subject, in a child process.
    parser.add_argument("--subject", choices=["write-path"], help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subject:
        args.home.mkdir(parents=True, exist_ok=True)
        result = subject_write_path(args.devices, args.home)
        emit_result({**result, "finished_at": time.time()}, args.json)
        return 0
    from datetime import UTC, datetime

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-scaleout-"))
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    write_size = parse_size(args.write_size) if args.write_size.strip() else None
    run_id = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
    result = merge(previous, compare(sizes, write_size, workdir), run_id)
    result["machine"] = machine()
    print()
    print(render(result))
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = all(e["ok"] for e in result["refresh"].values())
    return 0 if ok and (result["write_path"] or {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
