"""Dagster's own floor under the 10k point: Sentinel's one-run job, shape for shape, with
bodies that do nothing.

`describe()` reads the shape of the `fleet_and_reports` job from Sentinel's definitions: its
steps, the assets each one writes, the inputs each loads or only depends on, its checks (and
which of them are blocking), which steps are partitioned by region, their pools, and the
region partitions. The child (`python -m benchmarks.dagster_floor --shape FILE`) builds that
graph with trivial bodies (every output None, an IO manager that stores nothing, every check
passed) and records what Sentinel's run records: a materialization per asset and region, and
each check's evaluation per region partition, yielded the way `defs/region_steps` yields them.
It runs it as `sentinel demo` does: one run over the region range (Dagster's range tags),
`dg.execute_job` of a reconstructable job on the in-process executor, console logs silenced,
against a fresh instance folder with the repo's dagster.yaml, in a fresh interpreter timed
from launch. It imports Dagster and, of Sentinel, only the event log class that dagster.yaml
names. So its seconds are what the orchestrator costs before any of Sentinel's work; the 10k
pipeline minus them is Sentinel's own (imports, settings, data work, metadata, catalog).

    python -m benchmarks.dagster_floor --describe /tmp/shape.json
    DAGSTER_HOME=/tmp/floor python -m benchmarks.dagster_floor --shape /tmp/shape.json
"""

from __future__ import annotations

import time

STARTED = time.time()  # before any import of this module's: the child's own start-up

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

JOB = "fleet_and_reports"  # `sentinel_assets.cli.orchestrate.ONE_RUN_JOB`
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def describe(job_name: str = JOB) -> dict[str, Any]:
    """The shape of Sentinel's job `job_name`, from its definitions (JSON-able)."""
    from sentinel_assets.definitions import run_defs

    job = run_defs().resolve_job_def(job_name)
    graph = job.asset_layer.asset_graph
    in_job = {key for ad in graph.assets_defs if ad.is_executable for key in ad.keys}
    steps = []
    for ad in graph.assets_defs:
        if not ad.is_executable:
            continue
        inputs = {}
        for name, key in ad.keys_by_input_name.items():
            if key in in_job:  # a dependency on an asset outside the job is not run here
                is_nothing = ad.node_def.input_def_named(name).dagster_type.is_nothing
                inputs[name] = {"asset": key.to_user_string(), "loaded": not is_nothing}
        steps.append(
            {
                "name": ad.node_def.name,
                "assets": sorted(key.to_user_string() for key in ad.keys),
                "inputs": inputs,
                "partitioned": ad.partitions_def is not None,
                "pool": getattr(ad.node_def, "pool", None),
                "checks": [
                    {
                        "asset": spec.asset_key.to_user_string(),
                        "name": spec.name,
                        "partitioned": spec.partitions_def is not None,
                        "blocking": spec.blocking,
                    }
                    for spec in ad.check_specs
                ],
            }
        )
    partitions = job.partitions_def.get_partition_keys() if job.partitions_def else []
    return {"job": job_name, "partitions": list(partitions), "steps": sorted_steps(steps)}


def sorted_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(steps, key=lambda step: step["name"])


def expected_records(shape: dict[str, Any]) -> dict[str, int]:
    """What one run over every partition records: a materialization per asset and partition,
    a check evaluation per check and partition (once for an unpartitioned one)."""
    regions = len(shape["partitions"])
    steps = shape["steps"]
    return {
        "steps": len(steps),
        "assets": sum(len(s["assets"]) for s in steps),
        "checks": sum(len(s["checks"]) for s in steps),
        "materializations": sum(
            len(s["assets"]) * (regions if s["partitioned"] else 1) for s in steps
        ),
        "check_evaluations": sum(
            regions if c["partitioned"] else 1 for s in steps for c in s["checks"]
        ),
    }


# --- the child: the same graph, trivial bodies ------------------------------------------------


def _step(step: dict[str, Any], regions: Any) -> Any:
    import dagster as dg

    partitions = regions if step["partitioned"] else None
    loaded = {name: i for name, i in step["inputs"].items() if i["loaded"]}
    upstream = sorted({i["asset"] for i in step["inputs"].values()})
    specs = [dg.AssetSpec(key, deps=upstream, partitions_def=partitions) for key in step["assets"]]
    check_specs = [
        dg.AssetCheckSpec(
            c["name"],
            asset=c["asset"],
            blocking=c["blocking"],
            partitions_def=regions if c["partitioned"] else None,
        )
        for c in step["checks"]
    ]

    def body(context, **_inputs):
        for key in step["assets"]:
            yield dg.Output(None, output_name=key)
        ranged = step["partitioned"] and not context.has_partition_key
        for spec in check_specs:
            if not ranged:
                yield dg.AssetCheckResult(
                    asset_key=spec.asset_key, check_name=spec.name, passed=True
                )
                continue
            # as `region_steps.region_check_events`: the check's output once, then its
            # evaluation for each region partition
            key = spec.key
            yield dg.Output(
                None, output_name=context.assets_def.get_output_name_for_asset_check_key(key)
            )
            for region in context.partition_keys:
                yield dg.AssetCheckEvaluation(
                    asset_key=key.asset_key,
                    check_name=key.name,
                    passed=True,
                    blocking=spec.blocking,
                    partition=region if spec.partitions_def is not None else None,
                )

    return dg.multi_asset(
        name=step["name"],
        specs=specs,
        ins={name: dg.AssetIn(i["asset"]) for name, i in loaded.items()},
        check_specs=check_specs,
        pool=step["pool"],
    )(body)


@cache
def floor_job(shape_file: str) -> Any:
    """The job of the shape in `shape_file`, with trivial bodies (reconstructable by name)."""
    import dagster as dg

    class NoStore(dg.IOManager):
        def handle_output(self, context, obj):
            return None

        def load_input(self, context):
            return None

    shape = json.loads(Path(shape_file).read_text())
    regions = dg.StaticPartitionsDefinition(shape["partitions"])
    assets = [_step(step, regions) for step in shape["steps"]]
    job = dg.define_asset_job(
        shape["job"], selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor
    )
    definitions = dg.Definitions(
        assets=assets,
        jobs=[job],
        resources={"io_manager": dg.IOManagerDefinition.hardcoded_io_manager(NoStore())},
    )
    return definitions.resolve_job_def(shape["job"])


def run_floor(shape_file: Path) -> dict[str, Any]:
    """Build, open the instance, run over the whole range; seconds of each phase."""
    imported = time.time()
    import dagster as dg

    shape = json.loads(shape_file.read_text())
    dagster_ready = time.time()
    floor_job(str(shape_file))
    built = time.time()
    # as `sentinel` opens it (`cli.instance.command_instance`): the event log module that
    # dagster.yaml names is loaded before the run storage checks its schema
    from sentinel_assets.defs.instance_storage import share_alembic_scripts

    share_alembic_scripts()
    instance = dg.DagsterInstance.get()
    instance.get_runs_count()
    opened = time.time()
    partitions = shape["partitions"]
    result = dg.execute_job(
        dg.build_reconstructable_job(__name__, floor_job.__name__, (str(shape_file),)),
        instance,
        run_config=QUIET_LOGS,
        raise_on_error=False,
        tags={RANGE_START_TAG: partitions[0], RANGE_END_TAG: partitions[-1]},
    )
    finished = time.time()
    with result:
        events = list(instance.all_logs(result.run_id))
    kinds = Counter(e.dagster_event_type.value for e in events if e.dagster_event is not None)
    # Not part of the floor: what importing Sentinel's data libraries adds once Dagster is
    # loaded (the limit does not count its imports, the pipeline has to)
    libraries = time.time()
    import duckdb  # noqa: F401
    import pandera.polars  # noqa: F401
    import polars  # noqa: F401

    libraries = time.time() - libraries
    return {
        "success": result.success,
        "run_id": result.run_id,
        "started_at": STARTED,
        "finished_at": finished,
        "seconds": {
            "imports": dagster_ready - imported,
            "definitions": built - dagster_ready,
            "instance": opened - built,
            "run": finished - opened,
        },
        "events": len(events),
        "materializations": kinds["ASSET_MATERIALIZATION"],
        "check_evaluations": kinds["ASSET_CHECK_EVALUATION"],
        "expected": expected_records(shape),
        "library_imports_seconds": libraries,
    }


def measure_floor(devices: int, workdir: Path) -> Any:
    """The floor in a fresh interpreter (`measure.run_child`), timed from launch, on a fresh
    instance folder with the repo's dagster.yaml; Sentinel's job shape is read in another
    child first, so the timed one imports nothing of Sentinel's definitions. `devices` only
    labels the measurement: the floor has no data."""
    from benchmarks.measure import REPO, run_child

    shape = workdir / "dagster-floor-shape.json"
    if not shape.exists():
        described = run_child(
            "dagster-floor-shape", devices, ["-m", __name__, "--describe", str(shape)], workdir
        )
        if described.returncode != 0:
            raise RuntimeError(f"describing the job failed:\n{described.log}")
    home = workdir / "dagster-floor"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    out = workdir / "dagster-floor.json"
    env = {"SENTINEL_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    args = ["-m", __name__, "--shape", str(shape), "--json", str(out)]
    measurement = run_child("dagster_floor", devices, args, workdir, env, out)
    shutil.rmtree(home, ignore_errors=True)
    return measurement


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--describe", type=Path, help="write Sentinel's job shape here and exit")
    parser.add_argument("--shape", type=Path, help="run the floor of this shape")
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    if args.describe:
        args.describe.write_text(json.dumps(describe(), indent=2))
        return
    if not args.shape or "DAGSTER_HOME" not in os.environ:
        parser.error("--shape and DAGSTER_HOME (a fresh folder with dagster.yaml) are needed")
    from benchmarks.measure import emit_result

    emit_result(run_floor(args.shape), args.json)


if __name__ == "__main__":
    main()


# --- what `make bench` reports --------------------------------------------------------------

RATIO_TARGET = 5.0  # issue 14: the 10k point within 5x of the limit


def compare(floor: Any, pipeline: Any, limit: Any, measured_at: str) -> dict[str, Any]:
    """The floor against the 10k point measured in the same sitting: how much of the
    pipeline's seconds are the orchestrator's own, and whether 5x the limit leaves room
    for Sentinel at all."""
    result = floor.result
    ok = floor.ok and result.get("materializations") == result.get("expected", {}).get(
        "materializations"
    )
    ok = ok and result.get("check_evaluations") == result.get("expected", {}).get(
        "check_evaluations"
    )
    budget = RATIO_TARGET * limit.seconds
    libraries = result.get("library_imports_seconds", 0.0)
    return {
        "measured_at": measured_at,
        "ok": ok,
        "devices": pipeline.devices,
        "seconds": floor.seconds,
        "phases": result.get("seconds", {}),
        "events": result.get("events"),
        "materializations": result.get("materializations"),
        "check_evaluations": result.get("check_evaluations"),
        "shape": result.get("expected", {}),
        "pipeline_seconds": pipeline.seconds,
        "limit_seconds": limit.seconds,
        "budget_seconds": budget,
        "floor_vs_limit": floor.seconds / limit.seconds,
        "sentinel_own_seconds": pipeline.seconds - floor.seconds,
        "library_imports_seconds": libraries,
        # what is left of 5x the limit for Sentinel's overhead beyond its work and imports
        "left_for_sentinel_seconds": budget - floor.seconds - limit.seconds - libraries,
        "reachable": ok and floor.seconds + limit.seconds + libraries < budget,
    }


def render(entry: dict[str, Any]) -> list[str]:
    """The results block's paragraph."""
    from benchmarks.measure import size_label

    shape, phases = entry["shape"], entry["phases"]
    label = size_label(entry["devices"])
    floor_work_imports = (
        entry["seconds"] + entry["limit_seconds"] + entry["library_imports_seconds"]
    )
    verdict = (
        f"floor + the work itself + importing Polars, DuckDB and Pandera "
        f"({entry['library_imports_seconds']:.2f} s once Dagster is loaded) = "
        f"{floor_work_imports:.2f} s against {RATIO_TARGET:.0f}x the limit "
        f"({entry['budget_seconds']:.2f} s): "
        + (
            f"{entry['left_for_sentinel_seconds']:.2f} s are left for everything else Sentinel "
            "adds (settings, checks, metadata, catalog, its own modules)"
            if entry["reachable"]
            else f"over by {-entry['left_for_sentinel_seconds']:.2f} s before anything else "
            f"Sentinel adds: the {label} target is out of reach with this orchestrator set-up"
        )
    )
    return [
        "",
        f"Dagster floor (`benchmarks/dagster_floor.py`: the `fleet_and_reports` job's "
        f"{shape.get('steps')} steps, {shape.get('assets')} assets and {shape.get('checks')} "
        f"checks over the region partitions, one run over the range, trivial bodies, fresh "
        f"instance with the repo's dagster.yaml, from launch): **{entry['seconds']:.2f} s** "
        f"(Dagster imports {phases.get('imports', 0):.2f}, definitions "
        f"{phases.get('definitions', 0):.2f}, instance {phases.get('instance', 0):.2f}, run "
        f"{phases.get('run', 0):.2f} s; {entry['events']} events, "
        f"{entry['materializations']} materializations and {entry['check_evaluations']} check "
        f"evaluations, as Sentinel's run records){'' if entry['ok'] else ' (FAILED)'}. "
        f"At {label} the floor alone is {entry['floor_vs_limit']:.1f}x the limit "
        f"({entry['limit_seconds']:.2f} s); {verdict}. The pipeline's "
        f"{entry['pipeline_seconds']:.2f} s are the floor plus "
        f"{entry['sentinel_own_seconds']:.2f} s of Sentinel's own (the work, its imports, "
        "settings, checks, metadata and catalog).",
    ]
