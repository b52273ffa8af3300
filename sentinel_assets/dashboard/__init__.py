"""The operations dashboard: plain Polars/DuckDB functions (`data`, `whatif`, `launch`) under
a thin Streamlit layer (`app`). Only `app` imports Streamlit; nothing here imports Dagster."""
