"""The stream's figures in Dagster: every minute, an observation of `mqtt_telemetry_stream`
and an evaluation of its `regions_reporting` check, from the consumers' status files; a
region that falls silent, or a stream whose consumers all stopped reporting, raises one
alert per silence or stop through the alert path (`alerts` table, log line, webhook)."""

import os
from datetime import UTC, datetime

import dagster as dg
import duckdb

from sentinel_assets import alerts
from sentinel_assets.defs.resources import WarehouseCatalog
from sentinel_assets.defs.sensors import deliver_pending
from sentinel_assets.defs.stream_assets import (
    REGIONS_REPORTING,
    STREAM_ASSET,
    observe,
    reporting_verdict,
)
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.stream import health
from sentinel_assets.stream.health import ConsumerStatus, Silence
from sentinel_assets.stream.settings import silence_seconds


def silence_alert(silence: Silence) -> alerts.Alert:
    """One alert per region and silence: its id carries when the silence began, so later
    ticks of the same silence raise nothing new, and the next silence raises again."""
    began = datetime.fromtimestamp(silence.quiet_from, UTC)
    return alerts.Alert(
        raised_at=datetime.now(UTC),
        asset=STREAM_ASSET,
        partition=silence.region,
        check=REGIONS_REPORTING,
        severity=dg.AssetCheckSeverity.WARN.value,
        failing_rows=None,
        run_id=f"stream-silence-since-{began:%Y%m%dT%H%M%SZ}",
        description=f"Region {silence.sentence()} (mqtt_telemetry_stream): check its gateways "
        "and the latest rollout.",
    )


def stopped_alert(stopped: ConsumerStatus, text: str) -> alerts.Alert:
    """One alert per stop of the stream: its id carries the last consumer report."""
    last = datetime.fromtimestamp(stopped.written_at, UTC)
    return alerts.Alert(
        raised_at=datetime.now(UTC),
        asset=STREAM_ASSET,
        partition=None,
        check=REGIONS_REPORTING,
        severity=dg.AssetCheckSeverity.WARN.value,
        failing_rows=None,
        run_id=f"stream-stopped-since-{last:%Y%m%dT%H%M%SZ}",
        description=text,
    )


@dg.sensor(
    name="stream_health_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records the MQTT consumers' figures as observations of mqtt_telemetry_stream "
    "and evaluates regions_reporting; a silent region, or a stream whose consumers all "
    "stopped, raises an alert.",
)
def stream_health_sensor(
    context: dg.SensorEvaluationContext, telemetry: TelemetryLanding, catalog: WarehouseCatalog
) -> dg.SensorResult | dg.SkipReason:
    """Skips quietly where no consumer ever ran (the embedded default, files only)."""
    state, problems, silences, metadata = observe(telemetry)
    for problem in problems:
        context.log.warning(problem)
    if not state.consumers:
        return dg.SkipReason(f"no stream consumer has run under {telemetry.landing}")
    passed, text, check_metadata = reporting_verdict(state, silences, problems)
    events: list = [
        dg.AssetObservation(asset_key=STREAM_ASSET, metadata=metadata),
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(STREAM_ASSET),
            check_name=REGIONS_REPORTING,
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=text,
            metadata=check_metadata,
        ),
    ]
    new: list[alerts.Alert] = []
    url = os.environ.get(alerts.WEBHOOK_ENV, "").strip()
    raised = [silence_alert(s) for s in silences]
    if stopped := health.stopped_consumer(state, silence_seconds()):
        raised.append(stopped_alert(stopped, text))
    if raised:
        try:
            with catalog.get_connection() as conn:
                new = alerts.record_alerts(conn, raised, notify=bool(url))
        except (dg.Failure, duckdb.Error) as error:
            context.log.warning(f"alerts table unavailable, retrying next tick: {error}")
    for alert in new:
        context.log.warning(alerts.log_line(alert))
    if new and url:
        deliver_pending(catalog, url, context.log)
    return dg.SensorResult(asset_events=events, skip_reason=dg.SkipReason(text))
