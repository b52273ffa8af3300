"""The benchmark's Dagster floor (`benchmarks.dagster_floor`) is Sentinel's one-run job shape
for shape, and its run records what Sentinel's run records: the orchestrator's cost it
measures is the cost of the same graph, with nothing of Sentinel's work in it."""

import json
from pathlib import Path

import dagster as dg
import pytest

from benchmarks import dagster_floor
from benchmarks.measure import Measurement
from sentinel_assets.contracts import REGIONS
from sentinel_assets.definitions import run_defs


def graph_shape(job: dg.JobDefinition) -> dict:
    """Per step of `job`: the assets it writes (partitioned or not), its upstream assets in
    the job, its checks, its pool."""
    graph = job.asset_layer.asset_graph
    in_job = {key for ad in graph.assets_defs if ad.is_executable for key in ad.keys}
    return {
        ad.node_def.name: {
            "assets": {k.to_user_string(): ad.partitions_def is not None for k in ad.keys},
            "upstream": {k.to_user_string() for k in ad.keys_by_input_name.values()}
            & {k.to_user_string() for k in in_job},
            "checks": {
                (s.key.to_user_string(), s.partitions_def is not None, s.blocking)
                for s in ad.check_specs
            },
            "pool": getattr(ad.node_def, "pool", None),
        }
        for ad in graph.assets_defs
        if ad.is_executable
    }


@pytest.fixture(scope="module")
def shape_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("floor") / "shape.json"
    path.write_text(json.dumps(dagster_floor.describe()))
    return path


def test_the_floor_builds_sentinels_job_shape_for_shape(shape_file: Path):
    sentinels = run_defs().resolve_job_def(dagster_floor.JOB)
    floor = dagster_floor.floor_job(str(shape_file))
    assert graph_shape(floor) == graph_shape(sentinels)
    assert floor.partitions_def.get_partition_keys() == list(REGIONS)
    expected = dagster_floor.expected_records(json.loads(shape_file.read_text()))
    assert expected["assets"] == len(sentinels.asset_layer.asset_graph.executable_asset_keys)


@pytest.mark.slow
def test_the_floor_run_records_every_region_as_sentinels_run_does(tmp_path: Path):
    measured = dagster_floor.measure_floor(10_000, tmp_path)
    assert measured.returncode == 0, measured.log
    result = measured.result
    assert result["success"]
    expected = result["expected"]
    assert result["materializations"] == expected["materializations"] > 0
    assert result["check_evaluations"] == expected["check_evaluations"] > 0
    assert measured.seconds > sum(result["seconds"].values()) > 0  # from launch: more
    limit = Measurement("limit", 10_000, 0.5, 0.0, 1, 0)
    pipeline = Measurement("pipeline", 10_000, 4.0, 0.0, 1, 0)
    entry = dagster_floor.compare(measured, pipeline, limit, "now")
    assert entry["ok"]
    assert entry["sentinel_own_seconds"] == pytest.approx(4.0 - measured.seconds)
    assert entry["reachable"] == (
        measured.seconds + 0.5 + result["library_imports_seconds"] < 5 * 0.5
    )
    assert f"**{measured.seconds:.2f} s**" in "".join(dagster_floor.render(entry))
