"""`sentinel`: run the pipeline headless and read its results, for people and for CI."""

import argparse
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sentinel_assets import paths, warehouse
from sentinel_assets.cli import stream as stream_commands
from sentinel_assets.cli import stream_demo
from sentinel_assets.cli import telemetry as telemetry_commands
from sentinel_assets.cli import timeseries as timeseries_commands
from sentinel_assets.cli.instance import command_instance
from sentinel_assets.cli.live import (
    POOLS,
    SLOT_WAIT_ENV,
    SLOT_WAIT_S,
    wants_live_view,
    watch_demo,
)
from sentinel_assets.cli.orchestrate import (
    ONE_RUN_JOB,
    ONE_RUN_MAX_DEVICES,
    ONE_RUN_MAX_DEVICES_ENV,
    RUN_MODES,
    RunOutcome,
    instance_home,
    one_run_in_progress,
    one_run_wanted,
    prepare_instance_home,
    run_fleet,
    run_job,
    worker_pool,
)
from sentinel_assets.cli.progress import DEMO_TAG
from sentinel_assets.cli.stale_runs import slot_waits, sweep_dead_runs
from sentinel_assets.contracts import REGIONS
from sentinel_assets.defs.config import DEVICES_PER_REGION_ENV, devices_per_region, env_int
from sentinel_assets.failures import reads_as_disk_full, settings_problem
from sentinel_assets.reports import OutcomeSummary, read_outcome_summary

# Piped output (CI, logs) gets a wide, colourless table instead of a truncated 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160, no_color=True)


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""


def parse_regions(raw: str | None) -> list[str]:
    if not raw:
        return list(REGIONS)
    regions = [r.strip() for r in raw.split(",") if r.strip()]
    unknown = [r for r in regions if r not in REGIONS]
    if unknown:
        raise UsageError(f"unknown region(s) {', '.join(unknown)}; known: {', '.join(REGIONS)}")
    return regions


def read_summary(catalog: Path) -> tuple[pl.DataFrame, OutcomeSummary]:
    """Per-region summary and before/after outcome from the warehouse (read-only: safe
    beside a running UI)."""
    if not catalog.exists():
        raise UsageError(f"no warehouse at {catalog}: run `sentinel demo` (or `make demo`) first")
    try:
        conn = duckdb.connect(str(catalog), read_only=True)
    except duckdb.Error as error:
        problem = warehouse.storage_problem(error, catalog)
        raise UsageError(str(problem or f"cannot open {catalog}: {error}")) from None
    with conn:
        return conn.sql(warehouse.read_sql("region_summary.sql")).pl(), read_outcome_summary(conn)


def outcome_table(outcome: OutcomeSummary) -> Table:
    table = Table(title="Fleet status before and after recovery", header_style="bold")
    for column in ("status", "before", "after"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for status, before, after in outcome.status.select("status", "before", "after").iter_rows():
        table.add_row(status, f"{before:,}", f"{after:,}")
    return table


def print_results(catalog: Path) -> None:
    regions, outcome = read_summary(catalog)
    console.print(summary_table(regions))
    console.print(outcome_table(outcome))
    if outcome.halted.height:
        for region, text in outcome.halted.iter_rows():
            console.print(f"[bold red]Campaign halted in {region}[/]: {text}")
    else:
        console.print("No region's campaign is halted.")


def summary_table(summary: pl.DataFrame) -> Table:
    table = Table(title="Sentinel: OTA campaign by region", header_style="bold")
    for column, justify in [
        ("rank", "right"),
        ("region", "left"),
        ("devices", "right"),
        ("quarantined", "right"),
        ("retry", "right"),
        ("rollback", "right"),
        ("defer", "right"),
        ("triage", "right"),
        ("hold", "right"),
        ("top bottleneck: failed+partial", "left"),
    ]:
        table.add_column(column, justify=justify)
    for row in summary.iter_rows(named=True):
        table.add_row(
            str(row["region_rank"] or "-"),
            row["region"],
            f"{row['devices']:,}",
            f"{row['quarantined']:,} ({row['quarantine_rate']:.1%})",
            f"{row['retry']:,}",
            f"{row['rollback']:,}",
            f"{row['defer']:,}",
            f"{row['manual_triage']:,}",
            f"{row['hold']:,}",
            f"{row['top_bottleneck'] or '-'} ({row['bottleneck_failures'] or 0:,})",
        )
    return table


def disk_is_full(home: Path) -> bool:
    """Less free space than a run needs to start (what a failed run that filled it leaves;
    SQLite may have called it a "disk I/O error")."""
    return shutil.disk_usage(home).free < paths.min_free_bytes()


def disk_full_message(home: Path) -> str:
    """What a run that filled the disk leaves, and what to do, in one sentence."""
    free = shutil.disk_usage(home).free / 2**20 if home.exists() else 0.0
    return (
        f"The disk holding {home} ran full during the run ({free:.1f} MiB free now): free "
        "space there (or set SENTINEL_HOME to a larger disk) and run `sentinel demo` again; "
        "every shard is still its previous or its new complete version."
    )


def _print_outcome(outcome: RunOutcome) -> None:
    mark = "[green]done[/]" if outcome.success else "[red]FAILED[/]"
    detail = ""
    if outcome.failed_checks:
        detail = f"  failed checks: {', '.join(outcome.failed_checks)}"
    elif outcome.error:
        detail = f"  {outcome.error}"
    console.print(f"  {outcome.label:<13} {mark}  run {outcome.run_id[:8]}{detail}")


def check_settings() -> None:
    """The settings read from the environment, validated here once: a bad value is one
    sentence before any worker starts, not an error inside each region's run."""
    from pydantic import ValidationError

    from sentinel_assets.defs.executors import selected_executor
    from sentinel_assets.defs.resources import build_resources

    selected_executor()
    try:
        build_resources()
    except ValidationError as error:
        raise UsageError(settings_problem(error)) from None


def free_dead_runs() -> int:
    """Runs left unfinished by a killed `sentinel` process: marked failed, slots freed."""
    with command_instance() as instance:
        swept = sweep_dead_runs(instance)
    for line in swept:
        console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
    return len(swept)


def free_slots(args: argparse.Namespace) -> int:
    """`sentinel free-slots`: sweep dead runs, then say who holds the pools' slots now."""
    instance_home()
    if not free_dead_runs():
        console.print("No run was left behind by a process that is gone.")
    with command_instance() as instance:
        for line in slot_waits(instance, POOLS, waited_s=0):
            console.print(escape(line), soft_wrap=True)
    return 0


class Terminated(SystemExit):
    """SIGTERM, raised where the main thread is, so every `finally` runs."""


def rebuild_catalog_command(args: argparse.Namespace) -> int:
    """`sentinel rebuild-catalog`: a new catalog from the shards, then the report tables."""
    from sentinel_assets.defs.resources import STORAGE_COMPATIBILITY

    home = paths.data_home()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rebuilt = warehouse.rebuild_catalog(
        paths.catalog_path(home),
        paths.tables_root(home),
        stamp,
        config={"storage_compatibility_version": STORAGE_COMPATIBILITY},
    )
    if rebuilt.set_aside:
        console.print(f"The old catalog is kept as {rebuilt.set_aside}.", soft_wrap=True)
    console.print(
        f"New catalog {paths.catalog_path(home)}: views {', '.join(rebuilt.views) or '(none)'}; "
        f"{rebuilt.alerts_kept:,} alerts kept.",
        soft_wrap=True,
    )
    if not warehouse.has_shards(paths.tables_root(home), "sanitized_fleet"):
        console.print("No fleet shards yet: run `sentinel demo` to build the report tables.")
        return 0
    instance_home()
    with worker_pool(1) as pool:
        prepare_instance_home()
        report = pool.submit(run_job, "regional_report").result()
    _print_outcome(report)
    return 0 if report.success else 1


def stop_on_sigterm() -> None:
    """SIGTERM ends `sentinel` like Ctrl-C: through its clean-up, which ends its workers."""

    def exit_now(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)


def demo(args: argparse.Namespace) -> int:
    regions = parse_regions(args.regions)
    if args.devices_per_region is not None:
        if args.devices_per_region < 0:
            raise UsageError("--devices-per-region must be >= 0")
        os.environ[DEVICES_PER_REGION_ENV] = str(args.devices_per_region)
    home = paths.data_home()
    check_settings()
    demo_id = uuid.uuid4().hex
    one_run = one_run_wanted(args.runs, regions, devices_per_region())
    how = "in one run" if one_run else f"{args.parallel} at a time"
    console.print(
        f"[bold]Sentinel[/] materializing {len(regions)} region(s), {how}"
        f" -> {home}  (runs tagged {DEMO_TAG}={demo_id})"
    )
    started = time.perf_counter()
    slot_wait_s = env_int(SLOT_WAIT_ENV, int(SLOT_WAIT_S))
    labels = [ONE_RUN_JOB] if one_run else regions
    # A one-run refresh runs in this process; region runs need their worker processes.
    with nullcontext() if one_run else worker_pool(args.parallel) as pool:
        prepare_instance_home()  # while the workers load Dagster
        free_dead_runs()
        with watch_demo(
            console, demo_id, labels, live=wants_live_view(), slot_wait_s=slot_wait_s
        ) as (poll, reader):

            def remember_crash(outcome: RunOutcome) -> None:
                if outcome.error and not outcome.run_id:  # the worker died: no run tells it
                    reader.errors[outcome.label] = outcome.error

            fleet = run_fleet(
                regions,
                args.parallel,
                tags={DEMO_TAG: demo_id},
                on_done=remember_crash,
                on_poll=poll,
                pool=pool,
                one_run=one_run,
            )
    elapsed = time.perf_counter() - started
    if fleet.one_run and not fleet.one_run.success and fleet.regions:
        console.print(
            f"The one-run refresh failed ({escape(fleet.one_run.error or 'failed checks')}); "
            "the regions were run again one per run, so each region's result is its own.",
            soft_wrap=True,
        )
    outcomes = [*fleet.regions, *([fleet.report] if fleet.report else [])]
    failed = [outcome for outcome in outcomes if not outcome.success]
    for outcome in failed:
        _print_outcome(outcome)
    if fleet.one_run and not fleet.regions:  # it filled the disk: nothing ran again
        failed = [fleet.one_run]
    if failed and (
        any(reads_as_disk_full(outcome.error) for outcome in failed) or disk_is_full(home)
    ):
        console.print(f"[red]sentinel: {escape(disk_full_message(home))}[/]", soft_wrap=True)
        return 1
    if fleet.report is None:
        console.print("[red]Some regions failed; the regional report was not refreshed.[/]")
        console.print("Open `make ui` and look at the failed runs for the reason.")
        return 1
    if not fleet.report.success:
        return 1
    print_results(paths.catalog_path(home))
    console.print(
        f"Finished in {elapsed:.1f} s. Query the warehouse: "
        f"duckdb {paths.catalog_path(home)}   |   see the runs: make ui"
    )
    return 0


def summary(args: argparse.Namespace) -> int:
    print_results(paths.catalog_path())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="materialize every asset for every region headless")
    run.add_argument("--regions", help="comma-separated regions (default: all in the fleet file)")
    run.add_argument("--parallel", type=int, default=2, help="region runs at a time (default: 2)")
    run.add_argument(
        "--runs",
        choices=RUN_MODES,
        default="auto",
        help="one run for every region and the reports, or one run per region (default auto: "
        f"one run up to ${ONE_RUN_MAX_DEVICES_ENV} devices, {ONE_RUN_MAX_DEVICES:,})",
    )
    run.add_argument(
        "--devices-per-region",
        type=int,
        default=None,
        help="fleet size per region (default: $SENTINEL_DEVICES_PER_REGION or 10000)",
    )
    run.set_defaults(handler=demo, writes=(paths.HOME_ENV, paths.DAGSTER_HOME_ENV))
    show = commands.add_parser("summary", help="print the summary of the last materialization")
    show.set_defaults(handler=summary)
    free = commands.add_parser(
        "free-slots",
        help="mark runs whose process was killed as failed and free their pool slots",
    )
    free.set_defaults(handler=free_slots, writes=(paths.HOME_ENV, paths.DAGSTER_HOME_ENV))
    rebuild = commands.add_parser(
        "rebuild-catalog",
        help="set a broken warehouse.duckdb aside and rebuild it from the shards",
    )
    rebuild.set_defaults(
        handler=rebuild_catalog_command, writes=(paths.HOME_ENV, paths.DAGSTER_HOME_ENV)
    )
    telemetry_commands.add_commands(commands)
    timeseries_commands.add_commands(commands)
    stream_commands.add_commands(commands)
    stream_demo.add_command(commands)
    return parser


FOLDER_OF = {paths.HOME_ENV: paths.data_home, paths.DAGSTER_HOME_ENV: paths.dagster_home}


def _stopped(code: int) -> int:
    """The exit code of a stopped command. Should a one-run refresh's thread still be inside
    native code (DuckDB, Polars; its run is already marked failed), the process ends here,
    without the interpreter's finalization: tearing that thread down there aborts the whole
    process ("FATAL: exception not rethrown", exit -6) instead of exiting with `code`."""
    if one_run_in_progress():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "parallel", 1) < 1:
            raise UsageError("--parallel must be >= 1")
        stop_on_sigterm()
        # A command that writes checks its folders first: one sentence, not a traceback.
        for setting in getattr(args, "writes", ()):
            paths.require_writable_folder(FOLDER_OF[setting](), setting)
        return args.handler(args)
    except KeyboardInterrupt:
        console.print("[red]sentinel: interrupted; the runs in progress were ended.[/]")
        return _stopped(130)
    except Terminated as stop:
        console.print("[red]sentinel: stopped by SIGTERM; the runs in progress were ended.[/]")
        return _stopped(int(stop.code or 143))
    except (UsageError, ValueError) as error:
        console.print(f"[red]sentinel: {escape(str(error))}[/]", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
