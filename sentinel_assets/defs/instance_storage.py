"""The embedded instance's event log: Dagster's own SQLite event log, in the same files, with
its connections kept open instead of a new SQLAlchemy engine per event.

Dagster's `SqliteEventLogStorage` builds an engine, connects and disposes of it for every
event it writes (twice for an asset or check event: the run's shard and the index), ~10 ms
an event on these machines; a fleet refresh writes ~350 events. Keeping one engine per
database file (the index and the runs written or read most recently) makes that ~4 ms,
while every transaction stays as short as before, so other processes (the UI, the daemon,
parallel runs) share the files exactly as they do with Dagster's class.

Two more per-event costs go: the connections use `PRAGMA synchronous=NORMAL` (Dagster's files
are in WAL mode, where that is corruption-safe and a killed process loses nothing committed;
only an OS crash or power cut can lose the last events, which for a local development
instance is the right trade against an fsync per event), and the schema probes Dagster makes
for every asset event (does the tags table exist, has the asset-key table its index columns)
are answered once: migrations only ever add them. The production profile (PostgreSQL) does
not use this. Selected in the repo's `dagster.yaml`.
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

# Open engines kept: the index and the shards of the runs being written or watched.
OPEN_SHARDS = 16


def default_base_dir() -> str:
    """Where Dagster's default SQLite event log lives, so an existing instance keeps its
    history: `$DAGSTER_HOME/storage`."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise dg.DagsterInvariantViolationError(
            "DAGSTER_HOME is not set: the event log needs base_dir in dagster.yaml or DAGSTER_HOME"
        )
    return os.path.join(home, "storage")


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one engine per database file, reused across events."""

    def __init__(self, base_dir: str | None = None, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._schema_present: set[str] = set()
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> "PooledSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """This shard's engine, created (and its database initialized) on first use; the
        least recently used one is closed beyond `OPEN_SHARDS`."""
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                # one connection for the writes (they hold `_db_lock`), a few more for
                # Dagster's own nested use while a database is first initialized
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _relaxed_sync)
            self._engines[shard] = engine
            while len(self._engines) > OPEN_SHARDS:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Dagster asks for every asset event; a table, once there, stays."""
        if table_name not in self._schema_present and super().has_table(table_name):
            self._schema_present.add(table_name)
        return table_name in self._schema_present

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        """Asked for every asset event, like `has_table`; a column, once there, stays."""
        key = f"asset_keys.{column_name}"
        if key not in self._schema_present and super()._has_asset_key_col_on_connection(
            conn, column_name
        ):
            self._schema_present.add(key)
        return key in self._schema_present

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()

    def wipe(self) -> None:
        self._schema_present.clear()
        self._dispose_engines()  # run shards' files are deleted: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


def _relaxed_sync(dbapi_connection: Any, _record: Any) -> None:
    """One fsync per WAL checkpoint instead of per committed event (see the module's docstring)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
