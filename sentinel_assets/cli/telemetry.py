"""`sentinel ingest` and `sentinel simulate`: landed telemetry from the command line.

`sentinel ingest PATH...` runs the same ingestion as the landing sensor on files or folders
(complete files only, see `telemetry.landing`), for one-off and historical loads, and prints
one line per file. `sentinel simulate` writes realistic landing files (`telemetry.simulate`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb

from sentinel_assets import paths
from sentinel_assets.contracts import REGIONS
from sentinel_assets.paths import data_home
from sentinel_assets.telemetry import lake, landing
from sentinel_assets.telemetry.ingest import FileAccounting, ingest_files
from sentinel_assets.telemetry.simulate import SimulationPlan, simulate

CATALOG_FILE = "warehouse.duckdb"


class TelemetryUsageError(ValueError):
    """A mistake in how the command was called: `sentinel` prints it in one line."""


def _home() -> Path:
    return data_home()


def expand(paths: Sequence[str]) -> list[Path]:
    """Files as given, folders as their complete files; a missing path is a usage error."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found += landing.complete_files(path)
        elif path.is_file():
            found.append(path)
        else:
            raise TelemetryUsageError(f"no such file or folder: {raw}")
    return list(dict.fromkeys(p.resolve() for p in found))


def file_line(accounting: FileAccounting, note: str = "") -> str:
    if accounting.unreadable:
        outcome = f"unreadable ({accounting.unreadable}): 1 dead letter"
    else:
        outcome = (
            f"{accounting.accepted:>9,} accepted {accounting.duplicates:>7,} duplicates "
            f"{accounting.dead_letters:>7,} dead letters"
        )
    return f"  {accounting.source_file:<36} {outcome}  {accounting.seconds:6.2f} s{note}"


def _refresh_views(lake_root: Path, catalog: Path) -> str:
    try:
        with duckdb.connect(str(catalog)) as conn:
            views = lake.create_lake_views(conn, lake_root)
        return f"views {', '.join(views)} in {catalog}" if views else "no events yet"
    except duckdb.Error as error:
        return f"catalog views not refreshed ({error.__class__.__name__}: the file is in use?)"


def ingest_command(args: argparse.Namespace) -> int:
    files = expand(args.paths)
    if not files:
        raise TelemetryUsageError("no complete landing file under the given path(s)")
    home = _home()
    lake_root = paths.lake_root(home)
    known = lake.ingested_batches(lake_root)
    print(f"Ingesting {len(files)} file(s) into {lake_root}")
    if migrated := lake.ensure_record_ids(lake_root):
        print(f"  record ids of {migrated:,} lake part(s) recomputed ({lake.LAKE_META})")
    todo: list[Path] = []
    for path in files:
        try:
            batch = landing.batch_id(landing.content_hash(path))
        except OSError as error:
            print(f"  {path.name:<36} cannot be read: {error.strerror or error}")
            continue
        if batch in known and not args.force:
            manifest = lake.read_manifest(lake_root, batch) or {}
            print(f"  {path.name:<36} already ingested as batch {batch} "
                  f"({manifest.get('accepted', 0):,} accepted; --force to re-read)")  # fmt: skip
            continue
        known.add(batch)  # the same bytes twice in one call are read once
        todo.append(path)
    totals = {"accepted": 0, "duplicates": 0, "dead_letters": 0}
    for result in ingest_files(todo, lake_root):  # both cores; files published in order
        accounting = result.accounting
        for key in totals:
            totals[key] += getattr(accounting, key)
        print(file_line(accounting, "" if accounting.balanced else "  NOT BALANCED"))
    print(
        f"Total: {totals['accepted']:,} accepted, {totals['duplicates']:,} duplicates, "
        f"{totals['dead_letters']:,} dead letters; {_refresh_views(lake_root, home / CATALOG_FILE)}"
    )
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    regions = (
        tuple(r.strip() for r in args.regions.split(",") if r.strip()) if args.regions else REGIONS
    )
    unknown = [r for r in regions if r not in REGIONS]
    if unknown:
        raise TelemetryUsageError(
            f"unknown region(s) {', '.join(unknown)}; known: {', '.join(REGIONS)}"
        )
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else SimulationPlan.as_of
    if as_of.tzinfo is None:
        raise TelemetryUsageError(f"--as-of must carry a UTC offset, got {args.as_of!r}")
    plan = SimulationPlan(
        days=args.days,
        devices_per_region=args.devices_per_region,
        readings_per_day=args.readings_per_day,
        malformed_share=args.malformed_share,
        seed=args.seed,
        as_of=as_of,
        regions=regions,
    )
    if args.publish:
        return _publish(args.publish, plan)
    out = Path(args.out).expanduser() if args.out else paths.landing_root(_home())
    files = simulate(out, plan)
    size = sum(p.stat().st_size for p in files)
    print(
        f"Wrote {len(files)} landing file(s), {size / 2**20:,.1f} MiB, to {out} "
        f"({plan.days} day(s) x {len(regions)} region(s), {plan.devices_per_region:,} devices "
        f"per region, {plan.readings_per_day} readings a day, "
        f"{plan.malformed_share:.0%} malformed)"
    )
    return 0


def _publish(source: str, plan: SimulationPlan) -> int:
    """Publish the plan's readings as devices do (QoS 1) instead of writing files."""
    from sentinel_assets.stream.publisher import publish
    from sentinel_assets.stream.settings import broker_address
    from sentinel_assets.telemetry.simulate import published

    address = broker_address(source)
    sent = publish(address, published(plan))
    print(f"Published {sent:,} messages to {address.url} (QoS 1)")
    return 0


def _share(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share within [0, 1], got {raw!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share within [0, 1], got {raw!r}")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `ingest` and `simulate` on the `sentinel` parser."""
    ingest = commands.add_parser(
        "ingest", help="ingest landed telemetry files or folders into the lake (one line per file)"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    ingest.add_argument(
        "--force", action="store_true", help="re-read files already ingested (same content)"
    )
    ingest.set_defaults(handler=ingest_command, writes=(paths.HOME_ENV,))
    sim = commands.add_parser("simulate", help="write realistic device telemetry landing files")
    sim.add_argument("--days", type=int, default=2, help="days of readings (default: 2)")
    sim.add_argument(
        "--devices-per-region", type=int, default=1_000, help="devices per region (default: 1000)"
    )
    sim.add_argument(
        "--readings-per-day", type=int, default=4, help="readings per device a day (default: 4)"
    )
    sim.add_argument(
        "--malformed-share", type=_share, default=0.02, help="share of broken lines (default 0.02)"
    )
    sim.add_argument("--regions", help="comma-separated regions (default: all in the fleet file)")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--as-of", help="time of the last readings, ISO 8601 with offset")
    sim.add_argument("--out", help="folder to write to (default: $SENTINEL_HOME/landing)")
    sim.add_argument("--publish", metavar="URL", help="publish to mqtt://HOST:PORT instead")
    sim.set_defaults(handler=simulate_command)
