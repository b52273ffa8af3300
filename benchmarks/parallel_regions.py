"""All 8 region partitions one at a time against several at once, with no lock failures.

Each setting runs the pipeline exactly as `sentinel demo --parallel N` does (one Dagster run
per region in a pool of N worker processes, then the report), on its own fresh data folder,
and records the wall time, whether every run succeeded, and any step failure, retry or lock
error found in the runs' event logs.

    python -m benchmarks.parallel_regions                 # 1M devices, --parallel 1 and 2
    python -m benchmarks.parallel_regions --devices 100k --parallel 1,2,4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import Measurement, measure_pipeline, parse_size, size_label


def _row(parallel: int, m: Measurement) -> dict[str, Any]:
    runs = m.result.get("runs", [])
    breakdown = m.result.get("breakdown", {})
    return {
        "parallel": parallel,
        "seconds": m.seconds,
        "peak_rss_gib": m.peak_rss_gib,
        "ok": m.ok,
        "runs": len(runs),
        "runs_ok": sum(1 for r in runs if r.get("success")),
        "step_failures": breakdown.get("step_failures"),
        "step_retries": breakdown.get("step_retries"),
        "lock_messages": breakdown.get("lock_messages"),
    }


def compare(
    devices: int,
    parallels: Sequence[int],
    workdir: Path,
    reuse: Mapping[int, Measurement] | None = None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Time the pipeline at each `--parallel` setting (the fastest of `repeat` runs); `reuse`
    holds settings already measured at this size in the same benchmark run."""
    timings = []
    for parallel in parallels:
        m = (reuse or {}).get(parallel)
        if m is None:
            runs = [
                measure_pipeline(devices, parallel, workdir, runs="per-region")
                for _ in range(max(1, repeat))
            ]
            m = min(runs, key=lambda r: (not r.ok, r.seconds))
        timings.append(_row(parallel, m))
    by_parallel = {row["parallel"]: row for row in timings}
    speedup = None
    if 1 in by_parallel and 2 in by_parallel and by_parallel[2]["seconds"]:
        speedup = by_parallel[1]["seconds"] / by_parallel[2]["seconds"]
    return {
        "devices": devices,
        "timings": timings,
        "speedup": speedup,
        "no_lock_failures": all(
            row["ok"] and not row["step_failures"] and not row["lock_messages"] for row in timings
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1m", help="total devices (default 1m)")
    parser.add_argument("--parallel", default="1,2", help="settings to compare (default 1,2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; fastest kept")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    devices = parse_size(args.devices)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-parallel-"))
    parallels = [int(p) for p in args.parallel.split(",")]
    result = compare(devices, parallels, workdir, repeat=args.repeat)
    for row in result["timings"]:
        print(
            f"{size_label(devices)} devices, --parallel {row['parallel']}: "
            f"{row['seconds']:.1f} s, runs ok {row['runs_ok']}/{row['runs']}, "
            f"step failures {row['step_failures']}, lock errors {row['lock_messages']}",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=2))
    return 0 if result["no_lock_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
