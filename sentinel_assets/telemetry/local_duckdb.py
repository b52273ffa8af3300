"""One in-memory DuckDB connection per thread, for the vectorized steps of ingestion."""

from __future__ import annotations

import threading

import duckdb

_per_thread = threading.local()


def thread_connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB: opening one costs ~15 ms, which a file of many blocks
    paid at every block. A plain projection keeps the input order (DuckDB's
    `preserve_insertion_order`, set here)."""
    conn = getattr(_per_thread, "conn", None)
    if conn is None:
        conn = _per_thread.conn = duckdb.connect(config={"preserve_insertion_order": True})
    return conn
