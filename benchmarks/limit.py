"""The limit: the pipeline's transformations and table writes in one process, nothing else.

Same domain functions with the same settings as the Dagster assets (generate, corrupt,
sanitize + quarantine, decide, campaign status, outcomes; then the report tables from their
`.sql` files), writing the same Parquet shards and the same DuckDB catalog, but no Dagster, no
asset checks, no metadata and no re-reading of inputs: the floor for this machine. Regions run
one after another; Polars and DuckDB use every core inside each call. Chart images (asset
metadata, not tables) are not drawn.

    python -m benchmarks.limit --devices-per-region 125000 --home /tmp/limit
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from benchmarks.measure import emit_result
from sentinel_assets.contracts import REGIONS

Sink = Callable[[str, "object", str], None]  # (table, frame, region)


def run_limit(
    regions: Sequence[str],
    devices_per_region: int,
    home: Path,
    sinks: Mapping[str, Sink] | None = None,
    reports: bool = True,
) -> dict[str, object]:
    """Materialize every region and the report tables; seconds per stage (summed over
    regions) plus row counts per table. Each of `sinks` also writes every shard, timed as
    its own stage `write_<name>` (`benchmarks/scaleout.py`: the object-store write path)."""
    # Imported here so a caller measuring start-up sees the import cost in its own numbers.
    import duckdb

    from sentinel_assets import outcomes, warehouse
    from sentinel_assets.chaos import inject_faults
    from sentinel_assets.defs.config import SimulationSettings, region_seed
    from sentinel_assets.defs.resources import SentinelSettings
    from sentinel_assets.generate import generate_fleet
    from sentinel_assets.paths import CATALOG_FILE, TABLES_DIR
    from sentinel_assets.recovery import campaign_health, decide_recovery
    from sentinel_assets.sanitize import split_fleet

    settings = SentinelSettings(
        simulation=SimulationSettings(devices_per_region=devices_per_region)
    )
    sim, chaos = settings.simulation, settings.chaos
    policy, as_of = settings.recovery, sim.as_of_utc()
    tables_root = home / TABLES_DIR
    stage_names = ("generate", "chaos", "sanitize", "decide", "campaign", "outcomes", "write")
    stages = dict.fromkeys((*stage_names, "reports", *(f"write_{n}" for n in sinks or {})), 0.0)
    rows: dict[str, int] = {}

    def timed(stage: str, func, *args, **kwargs):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        stages[stage] += time.perf_counter() - start
        return result

    def write(table: str, frame, region: str) -> None:
        path = warehouse.partition_file(tables_root, table, region)
        timed("write", warehouse.write_partition, frame, path)
        for name, sink in (sinks or {}).items():
            timed(f"write_{name}", sink, table, frame, region)
        rows[table] = rows.get(table, 0) + frame.height

    started = time.perf_counter()
    for region in regions:
        raw = timed(
            "generate",
            generate_fleet,
            region,
            sim.devices_per_region,
            seed=sim.seed,
            as_of=as_of,
            profile=sim,
        )
        write("raw_fleet", raw, region)
        corrupted, ledger = timed(
            "chaos", inject_faults, raw, chaos.rate_by_kind(), seed=region_seed(chaos.seed, region)
        )
        del raw
        write("corrupted_fleet", corrupted, region)
        write("chaos_ledger", ledger, region)
        sanitized, quarantine = timed("sanitize", split_fleet, corrupted)
        del corrupted, ledger
        write("sanitized_fleet", sanitized, region)
        write("quarantine", quarantine, region)
        campaign = timed("campaign", campaign_health, sanitized, policy)
        write("campaign_status", campaign, region)
        decisions = timed(
            "decide", decide_recovery, sanitized, policy, as_of=as_of, campaign=campaign
        )
        write("recovery_decisions", decisions, region)
        result = timed("outcomes", outcomes.simulate_outcomes, sanitized, decisions, seed=sim.seed)
        write("recovery_outcomes", result, region)
        del sanitized, quarantine, decisions, result

    def build_reports() -> None:
        with duckdb.connect(str(home / CATALOG_FILE)) as conn:
            warehouse.create_views(conn, tables_root)
            for table in warehouse.REPORT_TABLES:
                rows[table] = warehouse.create_table_from_sql(
                    conn, table, warehouse.read_sql(f"{table}.sql")
                )

    if reports:
        timed("reports", build_reports)
    return {
        "seconds": time.perf_counter() - started,
        "stages": stages,
        "rows": rows,
        "devices": devices_per_region * len(regions),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices-per-region", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True, help="data folder (emptied first)")
    parser.add_argument("--regions", default=",".join(REGIONS))
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    args.home.mkdir(parents=True, exist_ok=True)
    result = run_limit(args.regions.split(","), args.devices_per_region, args.home)
    result["finished_at"] = time.time()
    result["pid"] = os.getpid()
    emit_result(result, args.json)


if __name__ == "__main__":
    main()
