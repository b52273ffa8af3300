"""The data folder's layout: one place says where every file goes, read from the environment
each time it is asked, never once at import."""

from pathlib import Path

import pytest

from sentinel_assets import paths
from sentinel_assets.cli.orchestrate import instance_home
from sentinel_assets.defs.resources import build_resources


@pytest.fixture
def no_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Neither variable set, in an empty working directory. (Set, then deleted: so both are
    restored after the test even when the code under test sets them itself.)"""
    for name in (paths.HOME_ENV, paths.DAGSTER_HOME_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_data_folder_defaults_to_dot_sentinel_in_the_working_directory(no_homes: Path):
    assert paths.data_home() == no_homes.resolve() / ".sentinel"
    assert paths.data_home().is_absolute()


def test_sentinel_home_moves_the_data_folder_even_after_import(
    no_homes: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(paths.HOME_ENV, str(no_homes / "elsewhere"))
    assert paths.data_home() == no_homes.resolve() / "elsewhere"
    monkeypatch.setenv(paths.HOME_ENV, "relative/home")
    assert paths.data_home() == no_homes.resolve() / "relative" / "home"


def test_an_empty_sentinel_home_means_the_default(no_homes: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(paths.HOME_ENV, "")
    assert paths.data_home() == no_homes.resolve() / ".sentinel"


def test_catalog_tables_and_reports_live_in_the_data_folder(sentinel_home: Path):
    assert paths.catalog_path() == sentinel_home / "warehouse.duckdb"
    assert paths.tables_root() == sentinel_home / "tables"
    assert paths.reports_root() == sentinel_home / "reports"
    other = Path("/srv/fleet")
    assert paths.catalog_path(other) == other / paths.CATALOG_FILE
    assert paths.tables_root(other) == other / paths.TABLES_DIR
    assert paths.reports_root(other) == other / paths.REPORTS_DIR


def test_the_dagster_instance_defaults_to_a_folder_in_the_data_folder(
    no_homes: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(paths.HOME_ENV, str(no_homes / "data"))
    assert paths.dagster_home() == no_homes.resolve() / "data" / "dagster"
    monkeypatch.setenv(paths.DAGSTER_HOME_ENV, str(no_homes / "instance"))
    assert paths.dagster_home() == no_homes.resolve() / "instance"


def test_the_resources_and_the_cli_use_the_same_folders(
    no_homes: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(paths.HOME_ENV, str(no_homes / "data"))
    catalog = build_resources()["catalog"]
    assert Path(catalog.database) == paths.catalog_path()
    assert catalog.tables_root == paths.tables_root()
    assert catalog.reports_root == paths.reports_root()
    home = instance_home()
    assert home == paths.dagster_home() == no_homes.resolve() / "data" / "dagster"
    assert (home / "dagster.yaml").is_file()


def test_a_disk_with_less_free_space_than_the_margin_is_named_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    free_mb = __import__("shutil").disk_usage(tmp_path).free // 2**20
    monkeypatch.setenv(paths.MIN_FREE_ENV, str(free_mb + 1024))
    with pytest.raises(paths.UnusableFolderError, match=r"has [\d.]+ MiB free, less than the"):
        paths.require_writable_folder(tmp_path / "data", paths.HOME_ENV)
    monkeypatch.setenv(paths.MIN_FREE_ENV, "0")
    paths.require_writable_folder(tmp_path / "data", paths.HOME_ENV)
    for bad in ("lots", "-5"):
        monkeypatch.setenv(paths.MIN_FREE_ENV, bad)
        with pytest.raises(paths.UnusableFolderError, match="whole number of MiB"):
            paths.min_free_bytes()


@pytest.mark.parametrize(
    ("message", "full"),
    [
        ("[Errno 28] No space left on device", True),
        ("(sqlite3.OperationalError) database or disk is full", True),
        ("parquet: underlying IO error: No space left on device (os error 28)", True),
        ("IO Error: Could not set lock on file", False),
        ("ValueError: unknown region 'mars-1'", False),
    ],
)
def test_a_full_disk_is_told_apart_from_other_failures(message: str, full: bool):
    from sentinel_assets.failures import reads_as_disk_full

    assert reads_as_disk_full(message) is full
