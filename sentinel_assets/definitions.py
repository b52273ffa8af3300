"""Entry point for `dagster dev` / `workspace.yaml` / `dg`: every definition under `defs/`.

Code that needs the definitions calls `defs()`: the first call in a process loads the defs
folder, later calls return the same `dg.Definitions` (an orchestrator worker runs many jobs).
`sentinel`'s own runs take them from `run_defs()`: the same folder, without the catalog of
installed component types that `load_from_defs_folder` adds for the UI.
"""

import warnings
from functools import cache
from pathlib import Path

import dagster as dg

from sentinel_assets import vocabulary

PROJECT = Path(__file__).parent


def fleet_file_problem() -> vocabulary.FleetVocabularyError | None:
    """What is wrong with the fleet file (`sentinel_assets.vocabulary`), if anything: raised
    before any module loads it, so Dagster shows its one sentence with the frame that loads
    the definitions only, not the import chain."""
    try:
        vocabulary.configured()
    except vocabulary.FleetVocabularyError as error:
        return vocabulary.FleetVocabularyError(str(error))
    return None


@dg.definitions
@cache
def defs() -> dg.Definitions:
    """Every asset, check, job, schedule, sensor and resource of the `sentinel_assets.defs`
    folder (`[tool.dg.project]` in pyproject.toml), loaded once per process, with the
    component-type catalog the UI shows."""
    if problem := fleet_file_problem():
        raise problem from None
    return dg.load_from_defs_folder(path_within_project=PROJECT)


@cache
def run_defs() -> dg.Definitions:
    """The definitions of `defs()` (the same folder, loaded the same way) without the
    catalog of every installed component type and its JSON schema, which only the UI reads:
    building it is ~0.25 s of every `sentinel` command and worker start-up."""
    if problem := fleet_file_problem():
        raise problem from None
    # As `load_from_defs_folder` does: the preview/beta notices of the APIs the definitions
    # use are for their authors, not a dozen lines before every `sentinel demo`.
    with warnings.catch_warnings():
        for notice in (dg.PreviewWarning, dg.BetaWarning, dg.SupersessionWarning):
            warnings.simplefilter("ignore", category=notice)
        tree = dg.ComponentTree.for_project(path_within_project=PROJECT)
        return tree.build_defs(tree.defs_module_path)  # `[tool.dg.project]` in pyproject
