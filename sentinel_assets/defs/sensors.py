"""The alert sensor: every failed asset check (any severity) becomes a row in the warehouse's
`alerts` table, a log line, and a webhook POST when `SENTINEL_ALERT_WEBHOOK_URL` is set.

It reads the check evaluations themselves: a failed non-blocking check does not fail its run,
so run-failure sensors never see it (Dagster issue #29896). The instance's default SQLite
storage shards events by run, so `get_event_records` has no cross-run storage-id cursor
there; the cursor walks finished runs by update time instead and reads each run's
`ASSET_CHECK_EVALUATION` records once. Rows are keyed by (run, asset, check, partition), so
a replayed tick (cursor lost, daemon killed mid-tick) raises nothing twice.
"""

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb

from sentinel_assets import alerts
from sentinel_assets.defs.resources import WarehouseCatalog

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
RUNS_PER_TICK = 50
DELIVERIES_PER_TICK = 20
# On its very first tick the sensor looks back this far, not at the whole history.
FIRST_LOOKBACK = timedelta(days=1)
# Runs finishing within this window of the cursor are re-read (ids remembered): clock ties.
OVERLAP = timedelta(seconds=5)


@dataclass(frozen=True)
class AlertCursor:
    """Finished runs up to `updated_after` are read; `seen` are read ones just before it;
    `pending` says webhook deliveries are owed, so a quiet tick need not open the catalog."""

    updated_after: datetime
    seen: frozenset[str] = frozenset()
    pending: bool = False

    @classmethod
    def parse(cls, raw: str | None, now: datetime) -> "AlertCursor":
        if not raw:
            return cls(now - FIRST_LOOKBACK)
        state = json.loads(raw)
        return cls(
            datetime.fromisoformat(state["updated_after"]),
            frozenset(state["seen"]),
            bool(state.get("pending")),
        )

    def serialize(self) -> str:
        state = {"updated_after": self.updated_after.isoformat(), "seen": sorted(self.seen)}
        return json.dumps({**state, "pending": self.pending})

    def fresh(self, records: Sequence[dg.RunRecord]) -> list[dg.RunRecord]:
        return [r for r in records if r.dagster_run.run_id not in self.seen]

    def advance(self, records: Sequence[dg.RunRecord], pending: bool) -> "AlertCursor":
        """Move past `records` (all those read, seen or not), keeping ids inside the overlap."""
        if not records:
            return AlertCursor(self.updated_after, self.seen, pending)
        latest = max(self.updated_after, *(_aware(r.update_timestamp) for r in records))
        recent = {(r.dagster_run.run_id, _aware(r.update_timestamp)) for r in records}
        seen = {run_id for run_id, at in recent if at >= latest - OVERLAP}
        return AlertCursor(latest, frozenset(seen), pending)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def finished_runs(instance: dg.DagsterInstance, cursor: AlertCursor) -> list[dg.RunRecord]:
    """Runs that finished since the cursor (and within its overlap), oldest first."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED, updated_after=cursor.updated_after - OVERLAP),
            order_by="update_timestamp",
            ascending=True,
            limit=RUNS_PER_TICK,
        )
    )


def failing_rows(evaluation: dg.AssetCheckEvaluation) -> int | None:
    """The contract checks report `failing_rows`; other checks have no row count."""
    value = evaluation.metadata.get("failing_rows")
    raw = getattr(value, "value", value)
    return int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> Iterator[alerts.Alert]:
    """One alert per failed check evaluation of the run, whatever its severity."""
    connection = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    for record in connection.records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.event_specific_data
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        yield alerts.Alert(
            raised_at=datetime.fromtimestamp(entry.timestamp, UTC),
            asset=evaluation.asset_key.to_user_string(),
            partition=evaluation.partition,
            check=evaluation.check_name,
            severity=evaluation.severity.value,
            failing_rows=failing_rows(evaluation),
            run_id=run_id,
            description=evaluation.description or "",
        )


def deliver_pending(
    catalog: WarehouseCatalog, url: str, log: dg.DagsterLogManager
) -> tuple[int, int, int]:
    """POST the alerts still owed to the webhook, recording each outcome as soon as it is
    known (a daemon killed later in the round does not send a delivered alert again);
    (delivered, failed, still owed). The first failure ends the round: the endpoint is
    down, the rest wait."""
    timing = alerts.DeliveryTiming.from_environment(os.environ)
    with catalog.get_connection() as conn:
        pending = alerts.pending_deliveries(conn, limit=DELIVERIES_PER_TICK)
    ui_url = os.environ.get(alerts.UI_URL_ENV) or None
    delivered = failed = 0
    for alert in pending:
        result = alerts.post_webhook(
            url,
            alerts.slack_payload(alert, ui_url),
            backoff_s=timing.backoff_s,
            timeout_s=timing.timeout_s,
            idempotency_key=alert.alert_id,
        )
        # The catalog is not held while the endpoint is waited for.
        with catalog.get_connection() as conn:
            alerts.record_delivery(conn, alert.alert_id, result)
        if not result.delivered:
            failed += 1
            log.warning(
                f"alert webhook delivery failed after {result.attempts} attempt(s) for "
                f"{alert.alert_id}: {result.error}; will retry on a later tick"
            )
            break
        delivered += 1
    with catalog.get_connection() as conn:
        owed = len(alerts.pending_deliveries(conn, limit=DELIVERIES_PER_TICK))
    return delivered, failed, owed


@dg.sensor(
    name="check_failure_alerts",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises every failed asset check once: a row in the `alerts` table of the "
    "warehouse, a log line, and a Slack-compatible POST to $SENTINEL_ALERT_WEBHOOK_URL.",
)
def check_failure_alerts(
    context: dg.SensorEvaluationContext, catalog: WarehouseCatalog
) -> dg.SensorResult | dg.SkipReason:
    """Runs by default: a contract failure nobody hears about is the failure mode to avoid."""
    cursor = AlertCursor.parse(context.cursor, datetime.now(UTC))
    records = finished_runs(context.instance, cursor)
    runs = cursor.fresh(records)
    found = [alert for r in runs for alert in failed_checks(context.instance, r.dagster_run.run_id)]
    url = os.environ.get(alerts.WEBHOOK_ENV, "").strip()
    new: list[alerts.Alert] = []
    if found:
        try:
            with catalog.get_connection() as conn:
                new = alerts.record_alerts(conn, found, notify=bool(url))
        except (dg.Failure, duckdb.Error) as error:
            # Not recorded, so the cursor stays: the next tick raises these again.
            context.log.warning(f"alerts table unavailable, retrying next tick: {error}")
            return dg.SkipReason(f"alerts table unavailable, will retry: {error}")
    for alert in new:
        context.log.warning(alerts.log_line(alert))
    summary = f"{len(runs)} finished run(s) read, {len(new)} new alert(s)"
    # Owed deliveries are looked up whenever failures were read, not only new ones: a tick
    # killed after recording its alerts (the cursor never advanced) leaves them owed, and
    # the tick that reads the same runs again must send them. A lost cursor looks too.
    pending = cursor.pending or bool(found and url) or context.cursor is None
    if url and pending:
        try:
            delivered, failed, owed = deliver_pending(catalog, url, context.log)
            pending = owed > 0
            summary += f", {delivered} delivered, {failed} delivery failure(s), {owed} owed"
        except Exception as error:  # a delivery problem must never cost the cursor
            context.log.warning(f"alert delivery round failed, retrying next tick: {error}")
    return dg.SensorResult(
        cursor=cursor.advance(records, pending).serialize(), skip_reason=dg.SkipReason(summary)
    )
