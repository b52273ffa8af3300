"""Real servers for the production-profile tests, started once per session on 127.0.0.1,
and one fleet run through the production Dagster instance that several tests read."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinel_assets.cli import orchestrate
from sentinel_assets.contracts import REGIONS
from sentinel_assets_tests.servers import (
    Postgres,
    S3Emulator,
    running_postgres,
    running_s3,
    server_or_skip,
)

INSTANCE_YAML = Path(__file__).parents[2] / "deploy" / "production" / "dagster.yaml"
# Three regions, two runs at a time: concurrent processes on one PostgreSQL instance, at a
# third of the full refresh's cost.
PRODUCTION_REGIONS = list(REGIONS[:3])


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway TLS-only PostgreSQL 15 cluster, stopped and deleted after the session."""
    yield from server_or_skip(running_postgres(), "PostgreSQL for the production-profile tests")


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Emulator]:
    """moto's S3 emulator with a bucket `sentinel`, shared by the Delta and Celery tests."""
    for server in server_or_skip(running_s3(), "S3 emulator"):
        server.create_bucket("sentinel")
        yield server


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set, restored afterwards (session fixtures get no
    monkeypatch; nothing may leak into the rest of the suite)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class ProductionRun:
    home: Path
    env: dict[str, str]
    outcome: orchestrate.FleetOutcome

    @property
    def catalog(self) -> Path:
        return self.home / "warehouse.duckdb"


@pytest.fixture(scope="session")
def production_run(postgres: Postgres, tmp_path_factory) -> ProductionRun:
    """`fleet_refresh` for PRODUCTION_REGIONS, then `regional_report` (publishing its tables
    to the `analytics` database), recorded in a Dagster instance loaded from
    deploy/production/dagster.yaml on the test PostgreSQL."""
    home = tmp_path_factory.mktemp("production") / "sentinel"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(INSTANCE_YAML, home / "dagster" / "dagster.yaml")
    env = {
        **postgres.env(),
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SENTINEL_DEVICES_PER_REGION": "1500",
        "SENTINEL_PUBLISH_REPORTS": "1",  # adds `published_reports` to `regional_report`
    }
    with environment(env):
        outcome = orchestrate.run_fleet(PRODUCTION_REGIONS, parallel=2)
    return ProductionRun(home, env, outcome)
