"""Alerts on failed data contracts: one row per failed check in the warehouse's `alerts` table,
and a Slack-compatible webhook delivery that is retried with backoff and recorded, never raised.

Knows nothing of Dagster: the alert sensor (`defs/sensors.py`) turns check evaluations into
`Alert`s and calls these functions.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

WEBHOOK_ENV = "SENTINEL_ALERT_WEBHOOK_URL"
UI_URL_ENV = "SENTINEL_UI_URL"
# How long one POST may take, and the first pause before its retry (doubling after that).
TIMEOUT_ENV = "SENTINEL_ALERT_WEBHOOK_TIMEOUT_S"
BACKOFF_ENV = "SENTINEL_ALERT_WEBHOOK_BACKOFF_S"
ALERTS_TABLE = "alerts"

# delivery_status of an alert row
NO_WEBHOOK = "no_webhook"
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
# Attempts over all sensor ticks before an undeliverable alert stops being retried.
MAX_DELIVERY_ATTEMPTS = 9
# 429 and server-side errors are worth another try; any other 4xx will fail the same way.
RETRIABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})

ALERTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {ALERTS_TABLE} (
    alert_id VARCHAR PRIMARY KEY,
    raised_at TIMESTAMP NOT NULL,
    asset VARCHAR NOT NULL,
    partition VARCHAR,
    check_name VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    failing_rows BIGINT,
    run_id VARCHAR NOT NULL,
    description VARCHAR,
    recorded_at TIMESTAMP NOT NULL,
    delivery_status VARCHAR NOT NULL,
    delivery_attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    delivered_at TIMESTAMP
)
"""
ALERT_COLUMNS = (
    "alert_id, raised_at, asset, partition, check_name, severity, failing_rows, run_id, description"
)


@dataclass(frozen=True)
class Alert:
    """One failed check evaluation: what failed, where, how badly, and in which run."""

    raised_at: datetime
    asset: str
    partition: str | None
    check: str
    severity: str
    failing_rows: int | None
    run_id: str
    description: str = ""

    @property
    def alert_id(self) -> str:
        """A check evaluates once per run and partition, so this names one failure for good."""
        return f"{self.run_id}/{self.asset}/{self.check}/{self.partition or '-'}"

    @property
    def where(self) -> str:
        return f"{self.asset}[{self.partition}]" if self.partition else self.asset


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one webhook POST, after its retries."""

    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str = ""


def _utc_naive(moment: datetime) -> datetime:
    """DuckDB TIMESTAMP columns hold UTC without an offset, like every other Sentinel table."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def ensure_alerts_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(ALERTS_DDL)


def record_alerts(
    conn: duckdb.DuckDBPyConnection, alerts: Iterable[Alert], *, notify: bool = False
) -> list[Alert]:
    """Append alerts in one transaction and return those not recorded before, so a replayed
    sensor tick raises nothing twice. `notify` marks the new rows for webhook delivery."""
    ensure_alerts_table(conn)
    status = PENDING if notify else NO_WEBHOOK
    now = _utc_naive(datetime.now(UTC))
    new: list[Alert] = []
    conn.execute("BEGIN TRANSACTION")
    try:
        for alert in alerts:
            inserted = conn.execute(
                f"INSERT INTO {ALERTS_TABLE} ({ALERT_COLUMNS}, recorded_at, delivery_status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING alert_id",
                [
                    alert.alert_id,
                    _utc_naive(alert.raised_at),
                    alert.asset,
                    alert.partition,
                    alert.check,
                    alert.severity,
                    alert.failing_rows,
                    alert.run_id,
                    alert.description,
                    now,
                    status,
                ],
            ).fetchall()
            if inserted:
                new.append(alert)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return new


def pending_deliveries(conn: duckdb.DuckDBPyConnection, limit: int = 20) -> list[Alert]:
    """Alerts still owed to the webhook (new ones, and earlier ones whose delivery failed),
    oldest first."""
    ensure_alerts_table(conn)
    rows = conn.execute(
        f"SELECT raised_at, asset, partition, check_name, severity, failing_rows, run_id, "
        f"description FROM {ALERTS_TABLE} WHERE delivery_status = ? "
        "ORDER BY raised_at, alert_id LIMIT ?",
        [PENDING, limit],
    ).fetchall()
    return [
        Alert(raised_at.replace(tzinfo=UTC), asset, partition, check, severity, rows_, run, desc)
        for raised_at, asset, partition, check, severity, rows_, run, desc in rows
    ]


def record_delivery(
    conn: duckdb.DuckDBPyConnection,
    alert_id: str,
    result: DeliveryResult,
    max_attempts: int = MAX_DELIVERY_ATTEMPTS,
) -> None:
    """Keep the outcome of a delivery on the alert row; past `max_attempts` it is `failed`."""
    now = _utc_naive(datetime.now(UTC))
    conn.execute(
        f"UPDATE {ALERTS_TABLE} SET "
        "delivery_attempts = delivery_attempts + ?, "
        "delivery_status = CASE WHEN ? THEN ? WHEN delivery_attempts + ? >= ? THEN ? ELSE ? END, "
        "last_error = CASE WHEN ? THEN NULL ELSE ? END, "
        "delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END "
        "WHERE alert_id = ?",
        [
            result.attempts,
            result.delivered,
            DELIVERED,
            result.attempts,
            max_attempts,
            FAILED,
            PENDING,
            result.delivered,
            result.error,
            result.delivered,
            now,
            alert_id,
        ],
    )


def alert_title(alert: Alert) -> str:
    return f"Sentinel: check {alert.check} failed on {alert.where}"


def log_line(alert: Alert) -> str:
    """The one line an operator greps the daemon log for."""
    rows = "unknown" if alert.failing_rows is None else f"{alert.failing_rows:,}"
    return (
        f"ALERT {alert.severity} check {alert.asset}:{alert.check} failed"
        f" partition={alert.partition or '-'} failing_rows={rows} run={alert.run_id}"
    )


def slack_payload(alert: Alert, ui_url: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` for notifications, `blocks` for the message."""
    rows = "unknown" if alert.failing_rows is None else f"{alert.failing_rows:,}"
    run = f"`{alert.run_id}`"
    if ui_url:
        run = f"<{ui_url.rstrip('/')}/runs/{alert.run_id}|{alert.run_id[:8]}>"
    fields = {
        "Asset": f"`{alert.asset}`",
        "Partition": f"`{alert.partition}`" if alert.partition else "—",
        "Check": f"`{alert.check}`",
        "Severity": alert.severity,
        "Failing rows": rows,
        "Run": run,
    }
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert_title(alert)[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields.items()
            ],
        },
    ]
    if alert.description:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.description[:2900]}}
        )
    raised = alert.raised_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Raised {raised}"}]})
    text = f"{alert_title(alert)}: {rows} failing rows (severity {alert.severity})"
    return {"text": text, "blocks": blocks}


@dataclass(frozen=True)
class DeliveryTiming:
    """How patient one delivery is: the POST's timeout and the first retry's pause."""

    timeout_s: float = 5.0
    backoff_s: float = 1.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> DeliveryTiming:
        """The two settings from the environment; a bad value is one sentence."""
        values = {}
        for field, variable in (("timeout_s", TIMEOUT_ENV), ("backoff_s", BACKOFF_ENV)):
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not 0 < value <= 300:
                raise ValueError(f"{variable} must be a number of seconds in (0, 300], got {raw!r}")
            values[field] = value
        return cls(**values)


def post_webhook(
    url: str,
    payload: Mapping[str, Any],
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    idempotency_key: str | None = None,
) -> DeliveryResult:
    """POST `payload` as JSON, retrying transient failures after backoff_s, 2*backoff_s, ...
    Never raises: whatever happens is in the result, for the caller to record.
    `idempotency_key` (the alert id) lets a receiver drop a repeat of the same alert."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return DeliveryResult(False, 0, error=f"not an http(s) URL: {url!r}")
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "sentinel-alerts"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    status: int | None = None
    error = ""
    for attempt in range(1, max(1, attempts) + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return DeliveryResult(True, attempt, response.status)
        except urllib.error.HTTPError as failure:
            status, error = failure.code, f"HTTP {failure.code} {failure.reason}"
            if failure.code not in RETRIABLE_HTTP:
                return DeliveryResult(False, attempt, status, error)
        except (OSError, http.client.HTTPException, ValueError) as failure:
            # URLError, refused or reset connections and timeouts are all OSErrors.
            reason = getattr(failure, "reason", failure)
            status, error = None, f"{type(failure).__name__}: {reason}"
        if attempt < attempts:
            sleep(backoff_s * 2 ** (attempt - 1))
    return DeliveryResult(False, max(1, attempts), status, error)
