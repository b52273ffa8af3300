"""How results read on an asset's page in the UI."""

import os

import dagster as dg
import polars as pl

PREVIEW_ROWS = 10


def markdown(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """A frame as a markdown table, which the asset page renders."""
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=rows,
        tbl_cols=-1,
        tbl_width_chars=1000,  # never wrap a header: the UI renders the markdown itself
        fmt_str_lengths=60,
    ):
        return dg.MetadataValue.md(str(frame.head(rows)))


DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"
# The dashboard view that shows an asset (`sentinel_assets/dashboard/app.py`); others open
# the fleet overview.
DASHBOARD_VIEWS = {
    "quarantine": "triage",
    "triage_queue": "triage",
    "sanitized_fleet": "whatif",
    "recovery_decisions": "whatif",
    "campaign_status": "whatif",
}


def dashboard_link(asset: str) -> dict[str, dg.MetadataValue]:
    """Definition metadata linking an asset's page to its view in the operations dashboard
    (`make dashboard`; `SENTINEL_DASHBOARD_URL` when it is served elsewhere)."""
    base = (os.environ.get("SENTINEL_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL).rstrip("/")
    view = DASHBOARD_VIEWS.get(asset, "overview")
    return {"dashboard": dg.MetadataValue.url(f"{base}/?view={view}")}
