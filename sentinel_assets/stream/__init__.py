"""Telemetry as it streams: an MQTT consumer that turns messages into landing batches.

`sentinel consume` (`stream.consumer`) subscribes to `fleet/<region>/<device_id>/telemetry`
at QoS 1 with a persistent session, appends each message to a journal that is fsynced before
the message is acknowledged (`stream.journal`), and renames full or old journals into the
landing folder as `*.mqtt.jsonl` batches (`telemetry.envelope`), which the landing sensor and
`sentinel ingest` read like any landed file. No Dagster import here.
"""
