"""Run Sentinel jobs in this process and SIGKILL it at one named stage: the reliability
suite's fault. `python -m sentinel_assets_tests.reliability.kill_at STAGE JOB[:PARTITION]...`

The jobs run as `sentinel demo`'s workers run them (`orchestrate.run_job`: the instance in
`DAGSTER_HOME`, tagged with this process's id), so a killed run is left behind exactly as a
killed `sentinel demo` leaves it. The hook fires in the last job only; earlier ones run clean.
"""

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after(module: ModuleType, name: str, calls: int = 1) -> None:
    """Replace `module.name` by a version that does the real work, then dies on call `calls`."""
    original: Callable[..., Any] = getattr(module, name)
    seen = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        result = original(*args, **kwargs)
        seen += 1
        if seen >= calls:
            die()
        return result

    setattr(module, name, wrapper)


def kill_before_shard_rename(table: str) -> None:
    """Die once the new shard of `table` is written and fsynced, before its rename."""
    original = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        target = Path(dst)
        if target.parent.name == table and target.name.startswith("region="):
            die()
        original(src, dst, *args, **kwargs)

    os.replace = replace


def install(stage: str) -> None:
    from sentinel_assets import warehouse
    from sentinel_assets.defs import assets

    hooks: dict[str, Callable[[], None]] = {
        "generation": lambda: kill_after(assets, "generate_fleet"),
        "chaos": lambda: kill_after(assets, "inject_faults"),
        "sanitize": lambda: kill_after(assets, "split_fleet"),
        "shard write": lambda: kill_before_shard_rename("sanitized_fleet"),
        # The report's view refresh, half-way: some views re-pointed, the rest not yet.
        "catalog view update": lambda: kill_after(warehouse, "create_view", calls=3),
        # The first report table replaced, the others still the previous run's.
        "report write": lambda: kill_after(warehouse, "create_table_from_sql"),
    }
    hooks[stage]()


def main(stage: str, *jobs: str) -> int:
    from sentinel_assets.cli.orchestrate import prepare_instance_home, run_job

    prepare_instance_home()
    for position, job in enumerate(jobs):
        name, _, partition = job.partition(":")
        if position == len(jobs) - 1:
            install(stage)
        outcome = run_job(name, partition or None)
        if not outcome.success:
            print(f"{job} failed before the fault: {outcome.error}", file=sys.stderr)
            return 1
    print(f"the {stage} fault never fired", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
