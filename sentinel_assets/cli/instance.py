"""The command's Dagster instance, opened once per process and instance folder.

Opening one costs ~0.4 s here (its storage classes, the schema checks of every SQLite file);
a refresh needs it to set up, sweep dead runs, run and watch. The instance is thread-safe
(the one-run refresh writes from its thread while the main thread reads progress) and is
disposed when the process exits. A worker process opens its own: an open SQLite engine must
not cross a fork.
"""

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from sentinel_assets import paths
from sentinel_assets.defs.instance_storage import share_alembic_scripts

_open: dict[tuple[int, str], dg.DagsterInstance] = {}
_lock = threading.Lock()


@contextmanager
def command_instance() -> Iterator[dg.DagsterInstance]:
    """`DagsterInstance.get()`, shared by every call in this process for the same
    `DAGSTER_HOME`; leaving the block keeps it open."""
    key = (os.getpid(), os.environ.get(paths.DAGSTER_HOME_ENV, ""))
    with _lock:
        instance = _open.get(key)
        if instance is None:
            share_alembic_scripts()  # before the run storage, the first to check its schema
            instance = _open[key] = dg.DagsterInstance.get()
    yield instance


def close_instances() -> None:
    """Dispose of this process's instances when it exits."""
    with _lock:
        mine = [key for key in _open if key[0] == os.getpid()]
        instances = [_open.pop(key) for key in mine]
    for instance in instances:
        instance.dispose()


atexit.register(close_instances)
