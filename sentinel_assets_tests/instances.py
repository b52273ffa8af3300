"""Opening a test's Dagster instance folder the way `sentinel` and the UI do."""

import os
from pathlib import Path

import dagster as dg


def instance_from(dagster_home: Path) -> dg.DagsterInstance:
    """The instance in `dagster_home` with DAGSTER_HOME pointing at it while it loads, as
    it does for every process `sentinel` and the UI start (the repo's dagster.yaml keeps its
    event log in `$DAGSTER_HOME/storage`), without changing this test process's env."""
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        return dg.DagsterInstance.from_config(str(dagster_home))
    finally:
        if before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = before
