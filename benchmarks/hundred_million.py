"""`make bench-100m`: 100M devices (8 regions x 12.5M) through the whole pipeline on this
machine, against 10M in the same sitting.

Both run exactly as `sentinel demo` runs them (`measure_pipeline`: every asset and check,
recorded in a fresh Dagster instance, then the report run), each on its own fresh data
folder. 10M runs as `sentinel demo` does by default (one run per region, 2 at a time). 100M
runs one region at a time (`--parallel 1`): a 12.5M-device region's run peaks at ~11.5 GiB
(RSS of the command and its worker), so two side by side would not fit 16 GiB. Peak memory
is RSS summed over every process of the command, sampled every 0.1 s. Targets: 100M under
16 GiB, and its cost per device within 1.2x of 10M's.

    python -m benchmarks.hundred_million               # ~12 min on 2 cores, ~10 GB of disk
    python -m benchmarks.hundred_million --devices 20m --baseline 10m   # a smaller try
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import Measurement, measure_pipeline, parse_size, size_label, targets_table
from benchmarks.procmem import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "hundred_million_results.json"
MEMORY_BUDGET_GIB = 16.0
PER_DEVICE_RATIO = 1.2


def _entry(m: Measurement, parallel: int) -> dict[str, Any]:
    steps = m.result.get("breakdown", {}).get("steps", {})
    return {
        "devices": m.devices,
        "ok": m.ok,
        "parallel": parallel,
        "seconds": m.seconds,
        "us_per_device": m.us_per_device,
        "peak_rss_gib": m.peak_rss_gib,
        "load_avg": m.load_before,
        "steps": {name: round(step["seconds"], 2) for name, step in steps.items()},
        "log_tail": "" if m.ok else m.log[-3000:],
    }


def compare(
    devices: int, baseline: int, workdir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The baseline fleet as `sentinel demo` runs it, then `devices` one region at a time."""
    small = measure_pipeline(baseline, 2, workdir, runs="per-region")
    log(f"{size_label(baseline)}: {small.seconds:.1f} s, peak {small.peak_rss_gib:.2f} GiB")
    big = measure_pipeline(devices, 1, workdir, runs="per-region")
    log(f"{size_label(devices)}: {big.seconds:.1f} s, peak {big.peak_rss_gib:.2f} GiB")
    ratio = big.us_per_device / small.us_per_device if small.us_per_device else float("inf")
    return {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "baseline": _entry(small, 2),
        "fleet": _entry(big, 1),
        "targets": {
            f"peak memory at {size_label(devices)}, GiB": {
                "limit": MEMORY_BUDGET_GIB,
                "measured": big.peak_rss_gib,
                "met": big.ok and big.peak_rss_gib < MEMORY_BUDGET_GIB,
            },
            f"cost per device, {size_label(devices)} / {size_label(baseline)}": {
                "limit": PER_DEVICE_RATIO,
                "measured": ratio,
                "met": big.ok and small.ok and ratio <= PER_DEVICE_RATIO,
            },
        },
    }


def render(result: dict[str, Any]) -> str:
    rows = ["| devices | --parallel | seconds | us per device | peak RSS GiB | load avg |"]
    rows.append("|---:|---:|---:|---:|---:|---:|")
    for key in ("baseline", "fleet"):
        e = result[key]
        rows.append(
            f"| {size_label(e['devices'])} | {e['parallel']} | {e['seconds']:.1f} | "
            f"{e['us_per_device']:.2f} | {e['peak_rss_gib']:.2f} | {e['load_avg']:.1f} |"
            + ("" if e["ok"] else " FAILED")
        )
    return "\n".join([*rows, "", *targets_table(result["targets"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="100m")
    parser.add_argument("--baseline", default="10m")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-bench-100m-"))
    result = compare(parse_size(args.devices), parse_size(args.baseline), workdir)
    print(render(result))
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if all(t["met"] for t in result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
