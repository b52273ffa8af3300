"""How results and tables read on an asset's page in the UI."""

import os
from collections.abc import Mapping
from urllib.parse import urlencode

import dagster as dg
import pandera.polars as pa
import polars as pl

from sentinel_assets.contracts import ASSET_CONTRACTS

PREVIEW_ROWS = 10
COLUMN_SCHEMA = "dagster/column_schema"


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


def _rule(check: pa.Check) -> str | None:
    """A Pandera check as one readable constraint: a built-in check by its call
    (`in_range(0, 100)`, `isin([...])`), a named custom check by its name and docstring; an
    anonymous check says nothing worth showing."""
    if check.error:
        return str(check.error)
    if check.name and not check.name.startswith("<"):
        return f"{check.name}: {check.description}" if check.description else check.name
    return None


def _rules(checks: list[pa.Check]) -> list[str]:
    return [rule for rule in map(_rule, checks) if rule]


def column_schema(contract: pa.DataFrameSchema) -> dg.TableSchema:
    """A Pandera contract as the table schema the Dagster catalog shows: each column with its
    type, description and constraints (nullable, unique, checks), and the contract's
    cross-column rules as table constraints."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=str(column.dtype),
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=column.nullable,
                    unique=column.unique,
                    other=_rules(column.checks),
                ),
            )
            for name, column in contract.columns.items()
        ],
        constraints=dg.TableConstraints(other=_rules(contract.checks)),
    )


def contract_metadata(asset: str) -> Mapping[str, dg.TableSchema]:
    """Definition metadata of an asset: its columns from `contracts.ASSET_CONTRACTS`."""
    return {COLUMN_SCHEMA: column_schema(ASSET_CONTRACTS[asset])}


DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"
# The dashboard view that shows an asset (`sentinel_assets/dashboard/app.py`); others open
# the fleet overview.
DASHBOARD_VIEWS = {
    "quarantine": "triage",
    "triage_queue": "triage",
    "sanitized_fleet": "whatif",
    "recovery_decisions": "whatif",
    "campaign_status": "whatif",
    "dead_letters": "upload",
    "device_timeseries": "device",
    "telemetry_anomalies": "device",
    "daily_device_stats": "device",
    "daily_region_stats": "whatif",
}
# ... and the part of the view it opens at.
DASHBOARD_PARAMS = {"daily_region_stats": {"tab": "anomalies"}}


def dashboard_link(asset: str, **params: str) -> dict[str, dg.MetadataValue]:
    """Metadata linking an asset's page to its view in the operations dashboard (`make
    dashboard`; `SENTINEL_DASHBOARD_URL` when it is served elsewhere); `params` narrow the
    view (e.g. region, date and device of the drill-down)."""
    base = (os.environ.get("SENTINEL_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL).rstrip("/")
    view = DASHBOARD_VIEWS.get(asset, "overview")
    params = {**DASHBOARD_PARAMS.get(asset, {}), **params}
    query = f"&{urlencode(params)}" if params else ""
    return {"dashboard": dg.MetadataValue.url(f"{base}/?view={view}{query}")}
