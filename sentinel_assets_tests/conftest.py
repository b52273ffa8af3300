from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from sentinel_assets.chaos import inject_faults
from sentinel_assets.contracts import FAULT_KINDS
from sentinel_assets.definitions import defs
from sentinel_assets.generate import generate_fleet

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def as_of() -> datetime:
    return AS_OF


@pytest.fixture(scope="session")
def definitions() -> dg.Definitions:
    """The project's definitions as Dagster loads them: `sentinel_assets.definitions.defs()`."""
    return defs()


@pytest.fixture(scope="session")
def fleet() -> pl.DataFrame:
    """A clean 3,000-device fleet of one region."""
    return generate_fleet("eu-west", 3_000, seed=7, as_of=AS_OF)


@pytest.fixture(scope="session")
def corrupted(fleet: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same fleet with 5 % of each fault kind, and its ledger."""
    return inject_faults(fleet, dict.fromkeys(FAULT_KINDS, 0.05), seed=1)


@pytest.fixture
def sentinel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data folder and Dagster instance folder for one test."""
    home = tmp_path / "sentinel"
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", "1500")
    return home


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance
