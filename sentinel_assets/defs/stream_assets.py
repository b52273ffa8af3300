"""The MQTT stream as an external asset upstream of the telemetry lake, and its freshness
check (Dagster's "Observing streaming processes" shape).

`sentinel consume` runs outside Dagster's runs; `stream_health_sensor` reads its figures and
records them as observations of `mqtt_telemetry_stream` and evaluations of
`regions_reporting`. The check can also be executed from the UI at any time.
"""

import time

import dagster as dg
import polars as pl

from sentinel_assets.defs.metadata import markdown
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.stream import health
from sentinel_assets.stream.settings import SILENCE_ENV, silence_seconds
from sentinel_assets.telemetry import lake

STREAM_ASSET = "mqtt_telemetry_stream"
REGIONS_REPORTING = "regions_reporting"

mqtt_telemetry_stream = dg.AssetSpec(
    STREAM_ASSET,
    description=(
        "Device telemetry as it streams: devices publish to `fleet/<region>/<device_id>/"
        "telemetry` on the MQTT broker, `sentinel consume` lands durable batches "
        "(`*.mqtt.jsonl`) in the landing folder, and the landing sensor ingests them like any "
        "file. Observed every minute: messages per second, messages queued in the consumers, "
        "the last message per region, and what ingestion made of the stream batches."
    ),
    group_name="telemetry",
    kinds={"mqtt"},
    metadata={"topic_layout": "fleet/<region>/<device_id>/telemetry"},
)


def observe(telemetry: TelemetryLanding, now: float | None = None):
    """(health, problems, silences, metadata) of the stream at `now`."""
    statuses, problems = health.read_statuses(telemetry.landing)
    state = health.StreamHealth(now=time.time() if now is None else now, consumers=tuple(statuses))
    silences = health.silent_regions(state, telemetry.regions, silence_seconds())
    totals = health.stream_batch_totals(lake.read_manifests(telemetry.lake))
    latest = state.last_message_at()
    by_region = state.messages_by_region()
    rows = [
        {
            "region": region,
            "messages": by_region.get(region, 0),
            "last_message_at": _iso(latest.get(region)),
            "seconds_since": round(state.now - latest[region], 1) if region in latest else None,
        }
        for region in telemetry.regions
    ]
    metadata = {
        "consumers_running": len(state.running),
        "consumers_known": len(state.consumers),
        "messages_per_second": dg.MetadataValue.float(state.messages_per_second),
        "messages_queued": state.queued,
        "messages_consumed": state.messages,
        "stream_batches_ingested": totals["batches"],
        "events_accepted": totals["accepted"],
        "duplicates_dropped": totals["duplicates"],
        "dead_letters": totals["dead_letters"],
        "regions": markdown(pl.DataFrame(rows, infer_schema_length=None), rows=len(rows)),
    }
    return state, problems, silences, metadata


def _iso(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def reporting_verdict(state: health.StreamHealth, silences, problems) -> tuple[bool, str, dict]:
    """The freshness check's outcome: passed, one sentence, metadata."""
    limit_min = silence_seconds() / 60
    if stopped := health.stopped_consumer(state, silence_seconds()):
        text = (
            f"No stream consumer has reported for {(state.now - stopped.written_at) / 60:.0f} "
            f"min (the last was {stopped.consumer}, at {_iso(stopped.written_at)}): restart it; "
            "the broker keeps the devices' messages until it is back."
        )
        return False, text, {"silent_regions": 0, "consumer_stopped": stopped.consumer}
    if not state.running:
        text = (
            "No stream consumer is running (no status newer than "
            f"{health.CONSUMER_STALE_S:.0f} s under the landing folder), so no region is judged."
        )
        return True, text, {"silent_regions": 0}
    if silences:
        text = (
            f"{len(silences)} region(s) sent nothing for over {limit_min:g} min "
            f"({SILENCE_ENV}): " + "; ".join(s.sentence() for s in silences) + "."
        )
    else:
        text = f"Every region sent a message in the last {limit_min:g} min."
    if problems:
        text += " " + " ".join(problems)
    metadata = {
        "silent_regions": len(silences),
        "silent": ", ".join(s.region for s in silences),
        "limit_minutes": dg.MetadataValue.float(limit_min),
    }
    return not silences, text, metadata


@dg.asset_check(
    asset=STREAM_ASSET,
    name=REGIONS_REPORTING,
    blocking=False,
    description="Every region of the fleet sent a message within "
    f"${SILENCE_ENV} minutes (default 15) while a consumer is running: a silent region is the "
    "first sign of a broken gateway or a bad rollout. Consumers that stopped reporting for as "
    "long fail it too.",
)
def regions_reporting(telemetry: TelemetryLanding) -> dg.AssetCheckResult:
    state, problems, silences, _ = observe(telemetry)
    passed, text, metadata = reporting_verdict(state, silences, problems)
    return dg.AssetCheckResult(
        passed=passed, description=text, metadata=metadata, severity=dg.AssetCheckSeverity.WARN
    )
