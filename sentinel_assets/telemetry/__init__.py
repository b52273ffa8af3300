"""Telemetry from the field: landed batch files -> V2-shaped events, dead letters and a
date x region Parquet lake. Plain Polars/DuckDB functions; nothing here knows Dagster.

    wire          read CSV / JSON Lines / Parquet (optionally gzip) into text fields, in chunks
    schema        detect V1 or V2 per record, upcast V1, type and validate against the contracts
    dead_letters  reason codes and the dead-letter frame
    landing       content-hash identity of landed files, the `*.tmp` convention, moving aside
    lake          the hive-style date=/region= lake, written atomically
    ingest        one file -> events in the lake + dead letters + per-file accounting
    fleet         the fleet snapshot (latest event per device) for `raw_fleet`
    simulate      the device simulator that writes realistic landing files
"""
