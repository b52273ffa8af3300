"""3. Broken storage: a truncated or garbage Parquet shard, a missing shard and a garbage
`warehouse.duckdb` each fail the report once (never retried) with a sentence naming the file
and the way to rebuild it; doing what it says restores exactly what was there."""

import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets import paths, warehouse
from sentinel_assets.cli.main import main
from sentinel_assets_tests.reliability.shared import (
    fleet_lost_and_duplicated,
    materialize,
    new_home,
    snapshot,
    torn,
)
from sentinel_assets_tests.reliability.table import ScenarioRow, sized
from sentinel_assets_tests.test_broken_storage import retries, step_failures

pytestmark = pytest.mark.long(50)

REGIONS = ("eu-west", "af-south")
DEVICES = sized(500, 20_000)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"PAR1 not parquet" * 64)


def shard(home: Path, table: str, region: str) -> Path:
    return warehouse.partition_file(paths.tables_root(home), table, region)


def rematerialize(region: str) -> Callable[[dg.Definitions, Path], None]:
    def repair(definitions: dg.Definitions, home: Path) -> None:
        assert all(
            r.success for r in materialize(definitions, home, DEVICES, [("fleet_refresh", region)])
        )

    return repair


def rebuild_catalog(definitions: dg.Definitions, home: Path) -> None:
    assert main(["rebuild-catalog"]) == 0


# (what is damaged, how, what the message must say, how the user repairs it)
DAMAGES = {
    "truncated shard": (
        lambda home: shard(home, "sanitized_fleet", "eu-west"),
        truncate,
        ("is broken", "re-materialize sanitized_fleet for eu-west"),
        rematerialize("eu-west"),
    ),
    "garbage shard": (
        lambda home: shard(home, "quarantine", "af-south"),
        garbage,
        ("is broken", "re-materialize quarantine for af-south"),
        rematerialize("af-south"),
    ),
    "missing shard": (
        lambda home: shard(home, "recovery_decisions", "eu-west"),
        Path.unlink,
        ("is missing", "re-materialize recovery_decisions for eu-west"),
        rematerialize("eu-west"),
    ),
    "garbage catalog": (
        paths.catalog_path,
        lambda path: path.write_bytes(b"\x00garbage" * 4096),
        ("is not a readable DuckDB file", "`sentinel rebuild-catalog`"),
        rebuild_catalog,
    ),
}


@pytest.mark.slow
@pytest.mark.reliability("3. broken storage")
def test_broken_files_are_named_with_their_repair_and_the_repair_restores_them(
    scenario: ScenarioRow,
    definitions: dg.Definitions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    built = new_home(tmp_path / "built" / "sentinel")
    jobs = [("fleet_refresh", region) for region in REGIONS] + [("regional_report", None)]
    assert all(r.success for r in materialize(definitions, built, DEVICES, jobs))
    scenario.runs += len(jobs)
    original = snapshot(built)

    problems: dict[str, list[str]] = {}
    for name, (target, damage, said, repair) in DAMAGES.items():
        home = tmp_path / name.replace(" ", "-") / "sentinel"
        shutil.copytree(built, home)
        monkeypatch.setenv("SENTINEL_HOME", str(home))
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        damaged = target(home)
        damage(damaged)
        found: list[str] = []

        (report,) = materialize(definitions, home, DEVICES, [("regional_report", None)])
        messages = step_failures(report)
        if report.success or not messages:
            found.append("the report ran over broken storage")
        elif not all(part in messages[0] for part in (str(damaged), *said)):
            found.append(f"unclear message: {messages[0][:300]}")
        if retries(report):
            found.append(f"retried {retries(report)} time(s)")

        repair(definitions, home)
        after = materialize(definitions, home, DEVICES, [("regional_report", None)])
        scenario.runs += 2 + (repair is not rebuild_catalog)
        found += ["the report failed after the repair" for r in after if not r.success]
        restored = snapshot(home)
        found += [f"differs after the repair: {t}" for t in torn(restored, original, original)]
        lost, duplicated = fleet_lost_and_duplicated(original, restored)
        scenario.fault(not found and not lost and not duplicated, lost, duplicated)
        if found:
            problems[name] = found
    assert problems == {}
    assert scenario.survived == len(DAMAGES)
