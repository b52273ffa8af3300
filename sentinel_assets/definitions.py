"""Entry point for `dagster dev` / `workspace.yaml`: every definition under `defs/`."""

import dagster as dg

import sentinel_assets.defs

defs = dg.load_defs(defs_root=sentinel_assets.defs)
