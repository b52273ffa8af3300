"""The one-run refresh against the run-per-region refresh it replaced: same tables, frame for
frame.

Both run the pipeline exactly as `sentinel demo` does (`measure_pipeline`), once with
`--runs one` (every region and the reports in one Dagster run) and once with
`--runs per-region` (one run per region, 2 at a time, then the report run: the previous
implementation), each on its own fresh data folder. Then every region shard (Parquet) and
every table of the DuckDB catalog are read back and compared with `DataFrame.equals`.

    python -m benchmarks.equality --devices 1m
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.measure import measure_pipeline, parse_size, pipeline_home

MODES = ("one", "per-region")


def shard_frames(home: Path) -> dict[str, Any]:
    """Every region shard under the data folder, by its path inside `tables/`."""
    import polars as pl

    root = home / "tables"
    return {str(p.relative_to(root)): pl.read_parquet(p) for p in sorted(root.rglob("*.parquet"))}


def catalog_tables(home: Path) -> dict[str, Any]:
    """Every base table of the catalog (the report tables, the alert log), not the views."""
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = [r[0] for r in conn.sql("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {name: conn.table(name).pl() for name in sorted(names)}


def differences(a: dict[str, Any], b: dict[str, Any], what: str) -> list[str]:
    found = [f"{what} {k}: only in one-run" for k in sorted(set(a) - set(b))]
    found += [f"{what} {k}: only in per-region" for k in sorted(set(b) - set(a))]
    for key in sorted(set(a) & set(b)):
        if not a[key].equals(b[key]):
            found.append(f"{what} {key}: frames differ ({a[key].shape} vs {b[key].shape})")
    return found


def compare(devices: int, workdir: Path, parallel: int = 2) -> dict[str, Any]:
    """Run both, compare every table; the data folders are removed afterwards."""
    runs = {
        mode: measure_pipeline(devices, parallel, workdir, keep=True, runs=mode) for mode in MODES
    }
    homes = {mode: pipeline_home(workdir, devices, parallel, mode) for mode in MODES}
    try:
        if not all(m.ok for m in runs.values()):
            failed = [mode for mode, m in runs.items() if not m.ok]
            return {"devices": devices, "ok": False, "equal": False, "failed": failed}
        shards = [shard_frames(homes[mode]) for mode in MODES]
        tables = [catalog_tables(homes[mode]) for mode in MODES]
        found = differences(*shards, "shard") + differences(*tables, "table")
        return {
            "devices": devices,
            "ok": True,
            "equal": not found and bool(shards[0]) and bool(tables[0]),
            "shards_compared": len(set(shards[0]) & set(shards[1])),
            "tables_compared": len(set(tables[0]) & set(tables[1])),
            "rows_compared": sum(f.height for f in shards[0].values())
            + sum(f.height for f in tables[0].values()),
            "differences": found[:20],
            "seconds": {mode: m.seconds for mode, m in runs.items()},
            "peak_rss_gib": {mode: m.peak_rss_gib for mode, m in runs.items()},
        }
    finally:
        for home in homes.values():
            shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1m")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-equality-"))
    result = compare(parse_size(args.devices), workdir)
    print(json.dumps(result, indent=2))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
