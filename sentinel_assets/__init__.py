"""Sentinel: OTA firmware-update health for an IoT fleet, as Dagster assets over DuckDB and Polars.

Importing the package sets one default for the process, before Polars is loaded: Polars'
allocator (jemalloc) returns freed pages to the system 10 s after their last use, and the
ingestion frees and reuses hundreds of MB a second, so it kept paying page faults for memory it
had just released (1.3M of them at 10M events, ~15 % of its CPU as system time). Freed pages
are kept for a minute instead (`_RJEM_MALLOC_CONF`, jemalloc's own syntax; a value already in
the environment wins, and it only applies if Polars was not imported before Sentinel).
"""

import os

POLARS_ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
POLARS_ALLOCATOR_DEFAULT = "dirty_decay_ms:60000,muzzy_decay_ms:60000"

os.environ.setdefault(POLARS_ALLOCATOR_ENV, POLARS_ALLOCATOR_DEFAULT)
