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

Two costs of a run's start-up and asset events go too:
- Dagster hands its event log a batch of events at once where it has one (a run's planned
  materializations and checks, one output's materializations of every partition in a range)
  when `DAGSTER_EVENT_BATCH_SIZE` is set: this class sets it (`EVENT_BATCH_SIZE`) and writes a
  batch with one transaction per file, the same rows in the same order as event by event.
- Dagster reads its ~90 alembic migration scripts again for every check of a SQLite file's
  schema revision (runs, schedules, the index, every run's shard: ~30 ms each, ten on a fresh
  instance); they cannot change while a process runs, so they are read once per process
  (`share_alembic_scripts`).
"""

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from alembic.script import ScriptDirectory
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

# Open engines kept: the index and the shards of the runs being written or watched.
OPEN_SHARDS = 16
# Events Dagster may buffer before it hands them over as one batch (`store_event_batch`); a
# batch also ends with its last event (a run's planned events, one output's partitions).
EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 200
# Dagster's own migration scripts (`dagster._core.storage.sql.ALEMBIC_SCRIPTS_LOCATION`).
DAGSTER_SCRIPTS = "dagster:_core/storage/alembic"


def share_alembic_scripts() -> None:
    """One `ScriptDirectory` per process for Dagster's migration scripts: alembic's
    `ScriptDirectory.from_config` otherwise loads every script again for each revision check
    and stamp Dagster makes. Other script locations are left as they are."""
    if getattr(ScriptDirectory.from_config, "_sentinel_shared", False):
        return
    load = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]
    shared: dict[str, ScriptDirectory] = {}
    lock = threading.Lock()

    def from_config(cls: type[ScriptDirectory], config: Any) -> ScriptDirectory:
        if config.get_main_option("script_location") != DAGSTER_SCRIPTS:
            return load(cls, config)
        with lock:
            if DAGSTER_SCRIPTS not in shared:
                shared[DAGSTER_SCRIPTS] = load(cls, config)
            return shared[DAGSTER_SCRIPTS]

    from_config._sentinel_shared = True  # type: ignore[attr-defined]
    ScriptDirectory.from_config = classmethod(from_config)  # type: ignore[method-assign,assignment]


share_alembic_scripts()


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
        # The connection of each file a batch has written so far, in this thread.
        self._batch = threading.local()
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(EVENT_BATCH_SIZE))
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
        batch: dict[str, Connection] | None = getattr(self._batch, "connections", None)
        if batch is not None:  # inside `store_event_batch`, which holds `_db_lock`
            if shard not in batch:
                engine = self._engine(shard)
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
                batch[shard] = engine.connect()
                batch[shard].begin()
            yield batch[shard]
            return
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch's events stored as `store_event` stores each, in order, with one
        transaction per database file for the whole batch: an error while storing leaves
        none of it (Dagster then stores the events one by one)."""
        with self._db_lock:
            self._batch.connections = connections = {}
            try:
                for entry in events:
                    self.store_event(entry)
                for conn in connections.values():
                    conn.commit()
            finally:
                self._batch.connections = None
                for conn in connections.values():
                    conn.close()  # rolls back what was not committed

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
