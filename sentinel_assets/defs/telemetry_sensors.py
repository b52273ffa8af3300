"""The landing sensor: every new file in the landing folder is ingested exactly once.

Each tick claims the complete files (`telemetry.landing.scan`: a file's identity is its
SHA-256, files named `*.tmp`/`*.part`/`.*` are still being written and are skipped) and asks
for one `ingest_landing_batch` run per new batch, adding the batch as a `landing_batches`
partition. The cursor holds the batches requested but not ingested yet; batches with a
manifest in the lake are known for good, so the cursor stays small. There is no clock in it:
a file that arrives late or out of order is a new batch like any other. The run key is the
batch id, which Dagster deduplicates forever: exactly what "the same bytes are ingested once"
means (a failed ingestion is re-executed from the UI, not by dropping the file again).
"""

import json

import dagster as dg

from sentinel_assets.defs.partitions import landing_batches
from sentinel_assets.defs.telemetry_assets import ingest_landing_batch
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.telemetry import lake, landing

RUN_KEY_PREFIX = "landing-batch"


def parse_cursor(raw: str | None) -> set[str]:
    if not raw:
        return set()
    try:
        return set(json.loads(raw).get("in_flight", []))
    except (ValueError, AttributeError):
        return set()  # an unreadable cursor: the lake's manifests still say what is known


@dg.sensor(
    name="landing_sensor",
    job=ingest_landing_batch,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests each new file of the landing folder once (identity: content hash).",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, telemetry: TelemetryLanding
) -> dg.SensorResult:
    in_flight = parse_cursor(context.cursor)
    ingested = lake.ingested_batches(telemetry.lake)
    found = landing.scan(telemetry.landing, in_flight | ingested)
    for error in found.errors:
        context.log.warning(f"landing file skipped this tick: {error}")
    for name in found.redropped:
        context.log.info(f"{name} was already landed (same content): nothing to do")
    new = [batch for batch, _ in found.new_batches]
    requests = [
        dg.RunRequest(
            run_key=f"{RUN_KEY_PREFIX}-{batch}",
            partition_key=batch,
            tags={"sentinel/landing_file": name},
        )
        for batch, name in found.new_batches
    ]
    still_in_flight = sorted((in_flight | set(new)) - ingested)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[landing_batches.build_add_request(new)] if new else [],
        cursor=json.dumps({"in_flight": still_in_flight}),
        skip_reason=None
        if requests
        else dg.SkipReason(
            f"no new landing file ({len(found.redropped)} re-dropped, "
            f"{len(found.errors)} unreadable this tick)"
        ),
    )
