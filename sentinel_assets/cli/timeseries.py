"""`sentinel timeseries`: materialize the time-series assets for every date x region of the
lake (or the given dates), then the star schema, in this process, recorded in the Dagster
instance (`$DAGSTER_HOME`), so `make ui` shows their runs, checks and metadata."""

from __future__ import annotations

import argparse
import time

from sentinel_assets import paths
from sentinel_assets.cli.instance import command_instance
from sentinel_assets.cli.orchestrate import prepare_instance_home
from sentinel_assets.telemetry import lake


def lake_partitions(dates: list[str] | None = None) -> list[str]:
    """Partition keys `<date>|<region>` that have events in the lake, oldest first."""
    folder = paths.lake_root() / lake.EVENTS
    keys = sorted(
        lake.partition_key(d.name.removeprefix("date="), r.name.removeprefix("region="))
        for d in folder.glob("date=*")
        for r in d.glob("region=*")
        if any(r.glob("batch-*.parquet"))
    )
    return [k for k in keys if dates is None or lake.split_partition_key(k)[0] in dates]


def timeseries_command(args: argparse.Namespace) -> int:
    from sentinel_assets.definitions import run_defs
    from sentinel_assets.defs.resources import build_resources

    dates = [d.strip() for d in args.dates.split(",")] if args.dates else None
    keys = lake_partitions(dates)
    if not keys:
        raise ValueError("no telemetry events in the lake yet: run `sentinel ingest` first")
    prepare_instance_home()
    definitions, resources = run_defs(), build_resources()
    failed = 0
    # The runs' events go to the instance (and the UI); the terminal gets one line per partition.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with command_instance() as instance:
        job = definitions.resolve_job_def("telemetry_timeseries_refresh")
        for key in keys:
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=key,
                instance=instance,
                resources=resources,
                run_config=quiet,
                raise_on_error=False,
            )
            bad = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
            failed += not result.success
            mark = "done" if result.success else "FAILED"
            note = f"  failed checks: {', '.join(bad)}" if bad else ""
            print(f"  {key:<28} {mark}  {time.perf_counter() - started:5.1f} s{note}")
        star = definitions.resolve_job_def("star_schema_rebuild").execute_in_process(
            instance=instance, resources=resources, run_config=quiet, raise_on_error=False
        )
        failed += not star.success
    print(
        f"Time series of {len(keys)} partition(s) and the star schema "
        f"{'materialized' if not failed else 'had failures'}: views device_timeseries, "
        "telemetry_anomalies, daily_device_stats, daily_region_stats, dim_device, dim_date, "
        f"fact_telemetry in {paths.catalog_path()}"
    )
    return 1 if failed else 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `timeseries` on the `sentinel` parser."""
    run = commands.add_parser(
        "timeseries", help="materialize the time-series assets for the lake's partitions"
    )
    run.add_argument("--dates", help="comma-separated YYYY-MM-DD (default: every date)")
    run.set_defaults(handler=timeseries_command, writes=(paths.HOME_ENV, paths.DAGSTER_HOME_ENV))
