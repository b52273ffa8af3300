"""Report tables published to a real PostgreSQL: whole tables only, retried through drops."""

import os
import subprocess
import threading

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel_assets import production, publish

pytestmark = [pytest.mark.slow, pytest.mark.long(35)]


def target(postgres, schema: str) -> production.PublishTarget:
    env = {**postgres.env(), "SENTINEL_PUBLISH_SCHEMA": schema}
    return production.publish_target(env)


@pytest.fixture
def libpq_tls(postgres, monkeypatch):
    """PGSSLMODE / PGSSLROOTCERT for psycopg2 in this process (the server is TLS-only)."""
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", str(postgres.ca_file))


def read_back(postgres, schema: str, table: str, like: pl.DataFrame) -> pl.DataFrame:
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(f'SELECT * FROM "{schema}"."{table}"')
        rows = cur.fetchall()
    return pl.DataFrame(rows, schema=like.schema, orient="row")


def sort_all(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns, nulls_last=True)


def test_the_report_run_published_every_report_table_row_for_row(production_run, postgres):
    assert production_run.outcome.success
    with duckdb.connect(str(production_run.catalog), read_only=True) as conn:
        for table in publish.PUBLISHED_TABLES:
            local = conn.sql(f"SELECT * FROM {table}").pl()
            assert local.height > 0
            published = read_back(postgres, "sentinel_reports", table, local)
            assert_frame_equal(sort_all(published), sort_all(local), check_exact=True)
    # The materialization says where it went (the run's event is in the PostgreSQL instance).
    [(metadata,)] = postgres.query(
        "SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND asset_key = %s",
        db="dagster",
        params=('["published_reports"]',),
    )
    assert "sentinel_reports" in metadata


def test_a_bi_tool_reads_the_tables_with_psql(production_run, postgres):
    """What Metabase or Tableau does: a plain PostgreSQL client, no Sentinel code."""
    env = {
        **os.environ,
        "PGPASSWORD": postgres.password,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(postgres.ca_file),
    }
    result = subprocess.run(
        ["psql", "-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user,
         "-d", "analytics", "-tAc",
         "SELECT region, campaign FROM sentinel_reports.campaign_report ORDER BY region"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all("|" in line for line in lines)


def frame_of(rows: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "region": [f"r{i % 8}" for i in range(rows)],
            "devices": list(range(rows)),
            "rate": [i / 7 for i in range(rows)],
            "note": [
                None if i % 5 == 0 else ("" if i % 5 == 1 else f'{tag}, "q"') for i in range(rows)
            ],
            "halted": [i % 2 == 0 for i in range(rows)],
            "at": pl.datetime_range(
                pl.datetime(2026, 11, 1, time_zone="UTC"),
                pl.datetime(2026, 11, 1, time_zone="UTC") + pl.duration(seconds=rows - 1),
                "1s",
                eager=True,
            ),
        }
    )


def count(postgres, schema: str, table: str) -> int:
    return postgres.query(f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]


def test_types_nulls_and_empty_strings_survive_the_copy(postgres, libpq_tls):
    frame = frame_of(1_000, "a")
    result = publish.publish_table(target(postgres, "t_types"), "t", frame)
    assert (result.rows, result.attempts) == (1_000, 1)
    assert_frame_equal(read_back(postgres, "t_types", "t", frame).sort("devices"), frame)


def test_a_connection_cut_before_commit_leaves_the_previous_table_and_the_retry_succeeds(
    postgres, libpq_tls
):
    dest = target(postgres, "t_cut")
    publish.publish_table(dest, "clusters", frame_of(100, "old"))
    seen_during_cut = []

    def cut_own_backend(conn) -> None:
        if seen_during_cut:
            return  # second attempt: let it commit
        pid = conn.get_backend_pid()
        postgres.query("SELECT pg_terminate_backend(%s)", params=(pid,))
        seen_during_cut.append(count(postgres, "t_cut", "clusters"))

    result = publish.publish_table(
        dest, "clusters", frame_of(5_000, "new"), before_commit=cut_own_backend, backoff_s=0.1
    )
    # The new rows were all COPYed in, but never committed: readers still saw the old table.
    assert seen_during_cut == [100]
    assert (result.rows, result.attempts) == (5_000, 2)
    assert count(postgres, "t_cut", "clusters") == 5_000


def test_a_postgres_restart_mid_publish_is_retried_and_readers_never_see_half_a_table(
    postgres, libpq_tls
):
    dest = target(postgres, "t_restart")
    publish.publish_table(dest, "ranks", frame_of(200, "old"))
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # a dashboard polling the table through the restart
        while not stop.is_set():
            try:
                counts.append(count(postgres, "t_restart", "ranks"))
            except Exception:
                counts.append(-1)  # server down for a moment

    restarted = []

    def restart_server(conn) -> None:
        if not restarted:
            restarted.append(True)
            postgres.restart()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        result = publish.publish_table(
            dest, "ranks", frame_of(20_000, "new"), before_commit=restart_server, backoff_s=0.2
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.attempts == 2 and result.rows == 20_000
    assert count(postgres, "t_restart", "ranks") == 20_000
    assert set(counts) - {-1} <= {200, 20_000}, "a reader saw a partial table"


def test_a_statement_timeout_is_retried(postgres, libpq_tls):
    """Another session holds the table locked longer than statement_timeout: the attempt times
    out, rolls back, and the next one succeeds once the lock is gone."""
    dest = target(postgres, "t_timeout")
    publish.publish_table(dest, "queue", frame_of(10, "old"))
    dest = production.PublishTarget(**{**dest.__dict__, "statement_timeout_s": 1})
    locker = postgres.connect()
    locker.autocommit = False
    with locker.cursor() as cur:
        cur.execute('LOCK TABLE "t_timeout"."queue" IN ACCESS EXCLUSIVE MODE')
    release = threading.Timer(2.5, locker.rollback)
    release.start()
    try:
        result = publish.publish_table(dest, "queue", frame_of(30, "new"), backoff_s=0.5)
    finally:
        release.join()
        locker.close()
    assert result.attempts >= 2 and count(postgres, "t_timeout", "queue") == 30


def test_giving_up_says_so_in_one_sentence_and_keeps_the_table(postgres, libpq_tls):
    dest = target(postgres, "t_give_up")
    publish.publish_table(dest, "t", frame_of(10, "old"))

    def always_cut(conn) -> None:
        postgres.query("SELECT pg_terminate_backend(%s)", params=(conn.get_backend_pid(),))

    with pytest.raises(publish.PublishError) as error:
        publish.publish_table(
            dest, "t", frame_of(50, "new"), before_commit=always_cut, attempts=2, backoff_s=0.1
        )
    assert str(error.value).startswith("publishing t_give_up.t to 127.0.0.1:")
    assert "the previous version of the table is unchanged" in str(error.value)
    assert count(postgres, "t_give_up", "t") == 10


def test_missing_publish_variables_are_named_in_one_sentence():
    with pytest.raises(production.ProductionConfigError) as error:
        production.publish_target({"SENTINEL_PG_HOST": "db"})
    assert str(error.value) == (
        "SENTINEL_PUBLISH_REPORTS is on, so these environment variables must be set: "
        "SENTINEL_PG_PORT, SENTINEL_PG_USER, SENTINEL_PG_PASSWORD, SENTINEL_PG_ANALYTICS_DB."
    )
