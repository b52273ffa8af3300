"""4. Full disk and read-only disk: the data folder (instance included) on a small tmpfs.
`sentinel demo` refuses a disk that is already full, fails with one sentence when the disk
fills during the run, and refuses a read-only disk; every shard stays the previous or the new
complete version and readable, and once space is back the rerun gives the clean result."""

import subprocess
import sys
from pathlib import Path

import pytest

from sentinel_assets import paths
from sentinel_assets_tests.reliability.disks import fill, mount, tmpfs
from sentinel_assets_tests.reliability.shared import (
    REPO,
    environment,
    fleet_lost_and_duplicated,
    new_home,
    snapshot,
    torn,
)
from sentinel_assets_tests.reliability.table import ScenarioRow, sized

pytestmark = pytest.mark.long(50)

REGIONS = "eu-west,af-south"
SMALL = sized(300, 2_000)  # the fleet already on disk
BIG = sized(60_000, 200_000)  # a fleet whose shards need more than the space left
DISK_MB = sized(64, 256)
LEFT_MB = 3  # free space left for the run that fills the disk


def run_demo(home: Path, devices: int, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**environment(home, devices), "SENTINEL_MIN_FREE_MB": "1", **extra}
    return subprocess.run(
        [sys.executable, "-m", "sentinel_assets.cli.main", "demo", "--regions", REGIONS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def said_clearly(result: subprocess.CompletedProcess[str], *words: str) -> str | None:
    """None when the command failed with a message holding `words` and no traceback."""
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return "the command succeeded"
    if "Traceback" in output:
        return f"a traceback: {output[-1500:]}"
    missing = [w for w in words if w not in output]
    return f"no {missing} in: {output[-800:]}" if missing else None


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in paths.tables_root(home).rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.reliability("4. full and read-only disk")
def test_a_full_or_read_only_disk_fails_in_one_sentence_and_keeps_the_shards(
    scenario: ScenarioRow, tmp_path: Path
):
    clean = new_home(tmp_path / "clean" / "sentinel")
    assert run_demo(clean, BIG).returncode == 0
    expected = snapshot(clean)
    with tmpfs(tmp_path / "disk", DISK_MB, "scenario 4") as disk:
        home = new_home(disk / "sentinel")
        first = run_demo(home, SMALL)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        scenario.runs += 2
        previous = snapshot(home)
        problems: dict[str, list[str]] = {}

        # Already full: refused before anything starts, nothing touched.
        fill(disk, 0.5)
        refused = run_demo(home, BIG)
        found = [said_clearly(refused, str(home), "MiB free", "SENTINEL_MIN_FREE_MB")]
        found += [f"changed: {t}" for t in torn(snapshot(home), previous, previous)]
        problems["full before the run"] = [f for f in found if f]

        # Fills during the run: one sentence; each shard the previous or the new version.
        fill(disk, LEFT_MB)
        filled = run_demo(home, BIG)
        found = [said_clearly(filled, str(home), "ran full during the run")]
        state = snapshot(home)
        found += [f"torn: {t}" for t in torn(state, previous, expected)]
        found += [f"left behind: {name}" for name in leftovers(home)]
        problems["fills during the run"] = [f for f in found if f]

        # Read-only: refused in one sentence, the shards still readable as they were.
        mount("-o", "remount,ro", str(disk))
        read_only = run_demo(home, BIG)
        found = [said_clearly(read_only, str(home), "read-only file system")]
        found += [f"changed: {t}" for t in torn(snapshot(home), state, state)]
        problems["read-only"] = [f for f in found if f]
        mount("-o", "remount,rw", str(disk))
        scenario.runs += 3

        # Space back: the rerun gives exactly the clean run's result.
        (disk / "filler").unlink()
        rerun = run_demo(home, BIG)
        scenario.runs += 1
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        final = snapshot(home)
        differs = torn(final, expected, expected)
        lost, duplicated = fleet_lost_and_duplicated(expected, final)
        for name, found in problems.items():
            survived = not found and not differs
            scenario.fault(survived, *((lost, duplicated) if name == "read-only" else (0, 0)))
    assert problems == {name: [] for name in problems}
    assert differs == [] and (lost, duplicated) == (0, 0)
