"""The production Dagster instance (deploy/production/dagster.yaml) on a real PostgreSQL."""

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from sentinel_assets import production
from sentinel_assets_tests.production.conftest import PRODUCTION_REGIONS
from sentinel_assets_tests.servers import self_signed_certificate

pytestmark = [pytest.mark.slow, pytest.mark.long(50)]


@pytest.fixture
def production_env(production_run, monkeypatch):
    for key, value in production_run.env.items():
        monkeypatch.setenv(key, value)
    return production_run.env


def test_regions_and_report_run_through_the_postgres_instance(
    production_run, production_env, postgres
):
    production.check_instance_env()
    outcome = production_run.outcome
    assert outcome.success, [o for o in outcome.regions if not o.success] or outcome.report

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        # The report steps' pool is counted in PostgreSQL: one slot, as in the embedded yaml.
        assert instance.event_log_storage.get_concurrency_info("duckdb_catalog").slot_count == 1

    # Everything is in PostgreSQL, read back with plain SQL (not through Dagster).
    [(runs, succeeded)] = postgres.query(
        "SELECT count(*), count(*) FILTER (WHERE status = 'SUCCESS') FROM runs", db="dagster"
    )
    assert runs == succeeded == len(PRODUCTION_REGIONS) + 1
    [(partitions,)] = postgres.query(
        "SELECT count(DISTINCT partition) FROM event_logs "
        "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
        db="dagster",
        params=('["sanitized_fleet"]',),
    )
    assert partitions == len(PRODUCTION_REGIONS)
    [(checks, passed)] = postgres.query(
        "SELECT count(*), count(*) FILTER (WHERE execution_status = 'SUCCEEDED') "
        "FROM asset_check_executions WHERE check_name = 'records_conserved'",
        db="dagster",
    )
    assert checks == passed == len(PRODUCTION_REGIONS)
    # Every connection the instance made was TLS, checked against the CA file (the server's
    # pg_hba.conf accepts `hostssl` only, and PGSSLMODE=verify-full).
    assert postgres.query("SHOW ssl", db="dagster") == [("on",)]


def test_missing_instance_variables_are_named_in_one_sentence(monkeypatch):
    for name in production.INSTANCE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SENTINEL_PG_HOST", "db.internal")
    with pytest.raises(production.ProductionConfigError) as error:
        production.check_instance_env()
    assert str(error.value) == (
        "The production Dagster instance needs these environment variables set: "
        "SENTINEL_PG_PORT, SENTINEL_PG_USER, SENTINEL_PG_PASSWORD, SENTINEL_PG_DAGSTER_DB."
    )


def test_a_wrong_ca_file_is_refused_by_the_instance(production_env, tmp_path, monkeypatch):
    """PGSSLROOTCERT really reaches libpq: a CA that did not sign the server is refused."""
    other, _ = self_signed_certificate(tmp_path)  # a CA that signed nothing of the server's
    monkeypatch.setenv("PGSSLROOTCERT", str(other))
    with pytest.raises(Exception) as error, dg.DagsterInstance.get() as instance:
        instance.get_runs_count()
    assert "certificate verify failed" in str(error.value.__cause__)
