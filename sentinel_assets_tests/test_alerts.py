"""Alerts on failed checks: the domain module, then the sensor end to end against a local
webhook receiver."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from sentinel_assets import alerts, paths
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.sensors import check_failure_alerts, failing_rows
from sentinel_assets.paths import CATALOG_FILE
from sentinel_assets.warehouse import partition_file
from sentinel_assets_tests.webhook import Receiver, closed_port_url, serving

ALERT = alerts.Alert(
    raised_at=datetime(2026, 11, 1, 3, 4, 5, tzinfo=UTC),
    asset="sanitized_fleet",
    partition="eu-west",
    check="quarantine_rate_within_gate",
    severity="ERROR",
    failing_rows=42,
    run_id="3dd63af6-b46f-4f30-bee3-38e38ed8cd7b",
)
FAILING_GATE = {"resources": {"settings": {"config": {"gates": {"max_quarantine_rate": 0.0}}}}}


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    with serving(getattr(request, "param", [])) as server:
        yield server


def test_slack_payload_has_fallback_text_and_blocks():
    payload = alerts.slack_payload(ALERT, ui_url="http://127.0.0.1:3000/")
    assert set(payload) == {"text", "blocks"}
    assert "quarantine_rate_within_gate" in payload["text"] and "42" in payload["text"]
    header, section, context = payload["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    fields = "\n".join(field["text"] for field in section["fields"])
    for value in ("sanitized_fleet", "eu-west", "ERROR", "42", "/runs/3dd63af6-"):
        assert value in fields
    assert context["type"] == "context"
    json.dumps(payload)  # serializable as is


@pytest.mark.parametrize("receiver", [[500, 503]], indirect=True)
def test_delivery_retries_with_exponential_backoff(receiver):
    sleeps: list[float] = []
    result = alerts.post_webhook(
        receiver.url, alerts.slack_payload(ALERT), attempts=3, backoff_s=0.01, sleep=sleeps.append
    )
    assert result == alerts.DeliveryResult(True, 3, 200)
    assert receiver.answers == [500, 503, 200]
    assert sleeps == [0.01, 0.02]
    assert receiver.bodies == [alerts.slack_payload(ALERT)]


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_rejected_payload_is_not_retried(receiver):
    result = alerts.post_webhook(receiver.url, {"text": "x"}, sleep=lambda _: None)
    assert not result.delivered and result.attempts == 1 and result.status_code == 400


def test_an_unreachable_webhook_is_a_recorded_failure_not_an_exception(tmp_path: Path):
    result = alerts.post_webhook(closed_port_url(), {"text": "x"}, backoff_s=0.0)
    assert not result.delivered and result.attempts == 3 and result.error
    assert not alerts.post_webhook("file:///etc/passwd", {"text": "x"}).delivered
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        assert alerts.record_alerts(conn, [ALERT], notify=True) == [ALERT]
        alerts.record_delivery(conn, ALERT.alert_id, result, max_attempts=6)
        [row] = conn.sql(
            "SELECT delivery_status, delivery_attempts, last_error FROM alerts"
        ).fetchall()
        assert row[:2] == ("pending", 3) and row[2]
        assert alerts.pending_deliveries(conn) == [ALERT]
        alerts.record_delivery(conn, ALERT.alert_id, result, max_attempts=6)
        assert conn.sql("SELECT delivery_status FROM alerts").fetchall() == [("failed",)]
        assert alerts.pending_deliveries(conn) == []


def test_recording_is_idempotent_and_keeps_every_field(tmp_path: Path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        assert alerts.record_alerts(conn, [ALERT]) == [ALERT]
        assert alerts.record_alerts(conn, [ALERT]) == []
        row = conn.sql(
            "SELECT raised_at, asset, partition, check_name, severity, failing_rows, run_id, "
            "delivery_status FROM alerts"
        ).fetchall()
    assert row == [
        (
            datetime(2026, 11, 1, 3, 4, 5),
            "sanitized_fleet",
            "eu-west",
            "quarantine_rate_within_gate",
            "ERROR",
            42,
            ALERT.run_id,
            "no_webhook",
        )
    ]


def test_failing_rows_come_from_the_evaluation_metadata():
    def evaluation(metadata: dict) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("raw_fleet"),
            check_name="contract",
            passed=False,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.WARN,
        )

    assert failing_rows(evaluation({"failing_rows": dg.MetadataValue.int(7)})) == 7
    assert failing_rows(evaluation({"quarantine_rate": dg.MetadataValue.float(0.3)})) is None


@pytest.mark.slow
def test_a_failed_check_raises_one_alert_row_and_one_post(
    definitions: dg.Definitions,
    sentinel_home: Path,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv(alerts.WEBHOOK_ENV, receiver.url)
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", "500")
    resources = build_resources(sentinel_home)
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "instance")) as instance:
        run = definitions.resolve_job_def("fleet_refresh").execute_in_process(
            partition_key="eu-west",
            instance=instance,
            resources=resources,
            run_config=FAILING_GATE,
            raise_on_error=False,
        )
        assert not run.success

        def evaluate(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"catalog": resources["catalog"]}
            )
            return check_failure_alerts(context)

        first = evaluate(None)
        quarantined = pl.read_parquet(
            partition_file(paths.tables_root(sentinel_home), "quarantine", "eu-west")
        ).height
        with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
            rows = conn.sql(
                "SELECT asset, partition, check_name, severity, failing_rows, run_id, "
                "delivery_status, delivery_attempts FROM alerts"
            ).fetchall()
            ((description,),) = conn.sql("SELECT description FROM alerts").fetchall()
        # The row carries what the check page shows: the quarantined rows, rate and limit.
        assert quarantined > 0
        assert rows == [
            (
                "sanitized_fleet",
                "eu-west",
                "quarantine_rate_within_gate",
                "ERROR",
                quarantined,
                run.run_id,
                "delivered",
                1,
            )
        ]
        assert f"fails for {quarantined:,} rows" in description
        assert "max_quarantine_rate 0.0" in description
        assert f"quarantined_records {quarantined:,}" in description
        assert len(receiver.bodies) == 1
        assert "quarantine_rate_within_gate" in receiver.bodies[0]["text"]

        # The next tick (the daemon restarted or not: the cursor is Dagster's) raises nothing,
        # and neither does a tick that lost its cursor.
        for cursor in (first.cursor, None):
            evaluate(cursor)
        with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
            assert conn.sql("SELECT count(*) FROM alerts").fetchall() == [(1,)]
        assert len(receiver.bodies) == 1


@pytest.mark.slow
def test_a_webhook_that_is_down_never_costs_the_alert_row(
    definitions: dg.Definitions,
    sentinel_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv(alerts.WEBHOOK_ENV, closed_port_url())
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", "500")
    monkeypatch.setattr(alerts, "post_webhook", partial(alerts.post_webhook, backoff_s=0.0))
    resources = build_resources(sentinel_home)
    with dg.DagsterInstance.ephemeral() as instance:
        definitions.resolve_job_def("fleet_refresh").execute_in_process(
            partition_key="us-west",
            instance=instance,
            resources=resources,
            run_config=FAILING_GATE,
            raise_on_error=False,
        )
        cursor = None
        for tick_attempts in (3, 6):  # each tick retries what is still owed
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"catalog": resources["catalog"]}
            )
            result = check_failure_alerts(context)
            cursor = result.cursor
            with duckdb.connect(str(sentinel_home / CATALOG_FILE), read_only=True) as conn:
                [(status, attempts, error)] = conn.sql(
                    "SELECT delivery_status, delivery_attempts, last_error FROM alerts"
                ).fetchall()
            assert (status, attempts) == ("pending", tick_attempts) and "refused" in error.lower()
    assert "1 owed" in result.skip_reason.skip_message


def test_delivery_timing_comes_from_the_environment_and_refuses_nonsense():
    assert alerts.DeliveryTiming.from_environment({}) == alerts.DeliveryTiming()
    timing = alerts.DeliveryTiming.from_environment(
        {alerts.TIMEOUT_ENV: "0.5", alerts.BACKOFF_ENV: " 0.1 "}
    )
    assert (timing.timeout_s, timing.backoff_s) == (0.5, 0.1)
    for raw in ("soon", "0", "-1", "301", "nan"):
        with pytest.raises(ValueError, match=f"{alerts.TIMEOUT_ENV} must be a number of seconds"):
            alerts.DeliveryTiming.from_environment({alerts.TIMEOUT_ENV: raw})


def test_the_alert_id_travels_as_the_idempotency_key(receiver):
    result = alerts.post_webhook(receiver.url, {"text": "x"}, idempotency_key="run/a/c/-")
    assert result.delivered and receiver.keys == ["run/a/c/-"]
