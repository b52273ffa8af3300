"""An analyst's DuckDB session on the catalog, as a separate process: `ro` reads the fleet
view per region again and again for `seconds`; `rw` holds a read-write connection open and
idle for `seconds`. Either ends early once the `stop` file exists. Prints `held` once
connected; writes what it saw as JSON."""

import json
import os
import sys
import time
from pathlib import Path

import duckdb

PER_REGION = "SELECT region, count(*) FROM sanitized_fleet GROUP BY region"


def connect(database: str, read_only: bool, patience_s: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Connect, waiting out a writer's short transaction (the alert sensor, a report step)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return duckdb.connect(database, read_only=read_only)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(database: str, mode: str, seconds: float, report: str, stop: str) -> None:
    conn = connect(database, read_only=mode == "ro")
    print("held", flush=True)
    seen: dict[str, list[int]] = {}
    errors: list[str] = []
    reads = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until and not Path(stop).exists():
        if mode == "rw":
            time.sleep(0.2)
            continue
        try:
            for region, count in conn.execute(PER_REGION).fetchall():
                counts = seen.setdefault(region, [])
                if count not in counts:
                    counts.append(count)
            reads += 1
        except duckdb.Error as error:
            errors.append(str(error).splitlines()[0])
        time.sleep(0.05)
    conn.close()
    Path(report).write_text(
        json.dumps({"pid": os.getpid(), "reads": reads, "counts": seen, "errors": errors})
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
