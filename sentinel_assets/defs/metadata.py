"""How results read on an asset's page in the UI."""

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
