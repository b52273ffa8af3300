"""What the reliability scenarios share: a data folder with its own Dagster instance (the
repository's dagster.yaml, pools and all), jobs run in it, and a snapshot of every shard and
catalog table to compare versions by."""

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import RECORD_ID
from sentinel_assets.defs.resources import build_resources
from sentinel_assets_tests.instances import instance_from

REPO = Path(__file__).resolve().parents[2]
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def new_home(home: Path) -> Path:
    """A data folder whose instance folder holds the repository's dagster.yaml."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    return home


def instance_at(home: Path) -> dg.DagsterInstance:
    """The instance as the runs see it: dagster.yaml's event log lives in DAGSTER_HOME."""
    return instance_from(home / "dagster")


def environment(home: Path, devices_per_region: int) -> dict[str, str]:
    return {
        **os.environ,
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SENTINEL_DEVICES_PER_REGION": str(devices_per_region),
    }


def materialize(
    definitions: dg.Definitions,
    home: Path,
    devices_per_region: int,
    jobs: Sequence[tuple[str, str | None]],
    instance: dg.DagsterInstance | None = None,
    run_config: Mapping | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run `jobs` ((job, partition) pairs) in this process against `home` and its instance."""
    results = []
    previous = os.environ.get("SENTINEL_DEVICES_PER_REGION")
    os.environ["SENTINEL_DEVICES_PER_REGION"] = str(devices_per_region)
    try:
        with instance_at(home) if instance is None else _keep(instance) as live:
            for job, partition in jobs:
                results.append(
                    definitions.resolve_job_def(job).execute_in_process(
                        partition_key=partition,
                        instance=live,
                        resources=build_resources(home),
                        run_config=run_config or {},
                        raise_on_error=False,
                    )
                )
    finally:
        if previous is None:
            os.environ.pop("SENTINEL_DEVICES_PER_REGION", None)
        else:
            os.environ["SENTINEL_DEVICES_PER_REGION"] = previous
    return results


class _keep:
    """An instance the caller owns, usable in `with` without being disposed."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def __enter__(self) -> dg.DagsterInstance:
        return self.instance

    def __exit__(self, *exc: object) -> None:
        return None


def shard_frames(home: Path) -> dict[str, pl.DataFrame]:
    """Every region shard on disk, by `table/region=…` (what readers and views see); a shard
    that cannot be read is a one-cell frame with the error, equal to no version."""
    root = paths.tables_root(home)
    return {
        f"{shard.parent.name}/{shard.name}": _read(shard)
        for shard in sorted(root.glob("*/region=*.parquet"))
    }


def _read(shard: Path) -> pl.DataFrame:
    try:
        return warehouse.read_partition(shard)
    except warehouse.BrokenStorageError as error:
        return pl.DataFrame({"broken": [str(error)]})


def catalog_tables(home: Path) -> dict[str, pl.DataFrame]:
    """Every report table in the catalog (not the views, not the alerts), rows sorted."""
    with duckdb.connect(str(paths.catalog_path(home)), read_only=True) as conn:
        names = [
            name
            for (name,) in conn.sql(
                "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'alerts'"
            ).fetchall()
        ]
        frames = {name: conn.sql(f'FROM "{name}"').pl() for name in names}
    return {name: frame.sort(frame.columns) for name, frame in sorted(frames.items())}


def snapshot(home: Path) -> dict[str, pl.DataFrame]:
    return {**shard_frames(home), **catalog_tables(home)}


def same(frame: pl.DataFrame | None, other: pl.DataFrame | None) -> bool:
    if frame is None or other is None:
        return frame is other
    return frame.equals(other)


def torn(
    state: Mapping[str, pl.DataFrame],
    before: Mapping[str, pl.DataFrame],
    after: Mapping[str, pl.DataFrame],
) -> list[str]:
    """Files or tables of `state` that are neither the `before` nor the `after` version
    (a name absent from both and from `state` is fine)."""
    names = set(state) | set(before) | set(after)
    return sorted(
        name
        for name in names
        if not (same(state.get(name), before.get(name)) or same(state.get(name), after.get(name)))
    )


def lost_and_duplicated(expected: pl.DataFrame, found: pl.DataFrame) -> tuple[int, int]:
    """Records of `expected` missing from `found`, and extra copies of a record in `found`."""
    keys = found.get_column(RECORD_ID)
    lost = expected.join(found.select(RECORD_ID).unique(), on=RECORD_ID, how="anti").height
    return lost, keys.len() - keys.n_unique()


def stuck(instance: dg.DagsterInstance) -> list[str]:
    """Runs that never finished and pool slots still claimed or waited for."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED))
    info = instance.event_log_storage.get_concurrency_info(warehouse.CATALOG_POOL)
    return [f"run {run.run_id} {run.status.value}" for run in runs] + [
        f"{warehouse.CATALOG_POOL} slot held by {slot.run_id}" for slot in info.claimed_slots
    ]


def start_module(module: str, *args: str, env: Mapping[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fleet_lost_and_duplicated(
    expected: Mapping[str, pl.DataFrame], found: Mapping[str, pl.DataFrame]
) -> tuple[int, int]:
    """`lost_and_duplicated` summed over every sanitized_fleet and quarantine shard."""
    pairs = [
        lost_and_duplicated(frame, found[key])
        for key, frame in expected.items()
        if key.startswith(("sanitized_fleet/", "quarantine/"))
    ]
    return sum(lost for lost, _ in pairs), sum(extra for _, extra in pairs)
