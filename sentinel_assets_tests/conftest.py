from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from sentinel_assets.chaos import inject_faults
from sentinel_assets.contracts import FAULT_KINDS
from sentinel_assets.definitions import defs
from sentinel_assets.generate import generate_fleet
from sentinel_assets_tests.reliability.table import (  # noqa: F401 (pytest hooks, fixture)
    pytest_configure,
    pytest_terminal_summary,
    scenario,
    stream_row,
)
from sentinel_assets_tests.stream_helpers import broker, consumer  # noqa: F401 (fixtures)

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
# The day and region of the demo warehouse's time series.
DEMO_DAY, DEMO_REGION = "2026-10-31", "eu-west"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (`long(seconds)`): `make test`'s two workers take whole files, so
    the long ones start at once and the short ones fill in around them, instead of one long
    file running alone at the end."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("long")
        return marker.args[0] if marker else 0.0

    items.sort(key=seconds, reverse=True)


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


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory, definitions: dg.Definitions) -> Path:
    """A small materialized warehouse (the dashboard's input): `fleet_refresh` for two regions
    (af-south's campaign halts at the default abort rule, eu-west's runs), then
    `regional_report`, then one day of time series (`telemetry_timeseries_refresh` for
    DEMO_DAY|eu-west over a simulated lake of 40 devices, 48 readings a day), in process.
    Returns its SENTINEL_HOME."""
    from sentinel_assets.defs.resources import build_resources
    from sentinel_assets.telemetry import lake
    from sentinel_assets.telemetry.ingest import ingest_file
    from sentinel_assets.telemetry.simulate import SimulationPlan, simulate

    home = tmp_path_factory.mktemp("demo-warehouse") / "sentinel"
    with pytest.MonkeyPatch.context() as env, dg.DagsterInstance.ephemeral() as instance:
        env.setenv("SENTINEL_DEVICES_PER_REGION", "1500")
        resources = build_resources(home)
        for region in ("af-south", "eu-west"):
            result = definitions.resolve_job_def("fleet_refresh").execute_in_process(
                partition_key=region, instance=instance, resources=resources
            )
            assert result.success, region
        report = definitions.resolve_job_def("regional_report").execute_in_process(
            instance=instance, resources=resources
        )
        assert report.success
        plan = SimulationPlan(
            days=2, devices_per_region=40, readings_per_day=48, regions=(DEMO_REGION,)
        )
        for path in simulate(home / "landing", plan):
            ingest_file(path, home / "lake")
        day = definitions.resolve_job_def("telemetry_timeseries_refresh").execute_in_process(
            partition_key=lake.partition_key(DEMO_DAY, DEMO_REGION),
            instance=instance,
            resources=resources,
        )
        assert day.success
    return home
