"""Where Sentinel keeps its files: one data folder, `$SENTINEL_HOME` (default ./.sentinel).

    $SENTINEL_HOME/
    ├── warehouse.duckdb                         CATALOG_FILE: the DuckDB catalog
    ├── tables/<asset>/region=<region>.parquet   TABLES_DIR: one shard per asset and region
    ├── reports/<chart>.svg                      REPORTS_DIR: the charts (device days: .png)
    ├── landing/                                 LANDING_DIR: telemetry files arrive here
    ├── lake/                                    LAKE_DIR: telemetry events, dead letters
    └── dagster/                                 DAGSTER_DIR: the default `$DAGSTER_HOME`

The environment is read when a function is called, never at import, so a command or a test
that sets `SENTINEL_HOME` / `DAGSTER_HOME` first is always seen. No Dagster here.
"""

import os
import shutil
from pathlib import Path

HOME_ENV = "SENTINEL_HOME"
LANDING_ENV = "SENTINEL_LANDING_DIR"  # moves the landing folder out of the data folder
DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_HOME = ".sentinel"
CATALOG_FILE = "warehouse.duckdb"
TABLES_DIR = "tables"
REPORTS_DIR = "reports"
LANDING_DIR = "landing"
LAKE_DIR = "lake"
DAGSTER_DIR = "dagster"
MIN_FREE_ENV = "SENTINEL_MIN_FREE_MB"  # free space a writing command needs to start
DEFAULT_MIN_FREE_MB = 100


def _absolute(raw: str) -> Path:
    return Path(raw).expanduser().resolve()


def data_home() -> Path:
    """The one local data folder: `$SENTINEL_HOME`, else ./.sentinel, as an absolute path."""
    return _absolute(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def _home(home: Path | None) -> Path:
    return data_home() if home is None else home


def catalog_path(home: Path | None = None) -> Path:
    """The DuckDB catalog file of the data folder `home` (default `data_home()`)."""
    return _home(home) / CATALOG_FILE


def tables_root(home: Path | None = None) -> Path:
    """The folder of the region shards, one subfolder per asset."""
    return _home(home) / TABLES_DIR


def reports_root(home: Path | None = None) -> Path:
    """The folder the report charts (PNG) are written to."""
    return _home(home) / REPORTS_DIR


def landing_root(home: Path | None = None) -> Path:
    """The landing folder telemetry files are dropped into: `<home>/landing`; with no `home`
    given, `$SENTINEL_LANDING_DIR` if set, else the data folder's."""
    if home is None and (moved := os.environ.get(LANDING_ENV)):
        return _absolute(moved)
    return _home(home) / LANDING_DIR


def lake_root(home: Path | None = None) -> Path:
    """The telemetry lake: events by date and region, dead letters, batch manifests."""
    return _home(home) / LAKE_DIR


def dagster_home() -> Path:
    """The Dagster instance folder: `$DAGSTER_HOME`, else `dagster/` in the data folder."""
    raw = os.environ.get(DAGSTER_HOME_ENV)
    return _absolute(raw) if raw else data_home() / DAGSTER_DIR


class UnusableFolderError(ValueError):
    """A data or instance folder that cannot be created or written to."""


def require_writable_folder(folder: Path, setting: str) -> None:
    """Create `folder` if needed and prove it takes a file, or say in one sentence why not
    and what to do (`setting` names the variable that chose it)."""
    if folder.exists() and not folder.is_dir():
        raise UnusableFolderError(
            f"{setting} points at {folder}, which is a file, not a folder: set {setting} to a "
            "folder (it is created if missing)."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UnusableFolderError(
            f"Cannot write to {folder} ({setting}): {reason.lower()}; set {setting} to a "
            "writable folder, or free space / fix its permissions."
        ) from None
    require_free_space(folder, setting)


def min_free_bytes() -> int:
    """`SENTINEL_MIN_FREE_MB` (default 100) in bytes; a bad value is one sentence."""
    raw = os.environ.get(MIN_FREE_ENV, "").strip() or str(DEFAULT_MIN_FREE_MB)
    try:
        megabytes = int(raw.replace("_", ""))
    except ValueError:
        megabytes = -1
    if megabytes < 0:
        raise UnusableFolderError(
            f"{MIN_FREE_ENV} must be a whole number of MiB (0 or more), got {raw!r}."
        )
    return megabytes * 2**20


def require_free_space(folder: Path, setting: str) -> None:
    """A disk too full for a run is named before the run starts: started, it would fail
    half-way, with Dagster's own storage errors, after rewriting some shards."""
    free, need = shutil.disk_usage(folder).free, min_free_bytes()
    if free < need:
        raise UnusableFolderError(
            f"The disk holding {folder} ({setting}) has {free / 2**20:.1f} MiB free, less "
            f"than the {need // 2**20} MiB a run needs: free space there or set {setting} to a "
            f"folder on a larger disk ({MIN_FREE_ENV} sets the margin)."
        )
