"""Entry point for `dagster dev` / `workspace.yaml` / `dg`: every definition under `defs/`.

Code that needs the definitions calls `defs()`: the first call in a process loads the defs
folder, later calls return the same `dg.Definitions` (an orchestrator worker runs many jobs).
"""

from functools import cache
from pathlib import Path

import dagster as dg

from sentinel_assets import vocabulary


@dg.definitions
@cache
def defs() -> dg.Definitions:
    """Every asset, check, job, schedule, sensor and resource of the `sentinel_assets.defs`
    folder (`[tool.dg.project]` in pyproject.toml), loaded once per process.

    A bad fleet file (`sentinel_assets.vocabulary`) is reported before any module loads it,
    so Dagster shows its one sentence with this frame only, not the import chain."""
    try:
        vocabulary.configured()
    except vocabulary.FleetVocabularyError as error:
        raise vocabulary.FleetVocabularyError(str(error)) from None
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
