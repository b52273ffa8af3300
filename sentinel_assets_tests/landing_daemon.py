"""The landing sensor and the ingestion runs it asks for, driven in process as the Dagster
daemon would drive them (shared by the telemetry and dashboard tests)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sentinel_assets.definitions import defs
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.telemetry_resources import TelemetryLanding
from sentinel_assets.defs.telemetry_sensors import landing_sensor


class Landing:
    """Drives the sensor and the runs it asks for, like the daemon would."""

    def __init__(self, home: Path, instance: dg.DagsterInstance) -> None:
        self.home, self.instance = home, instance
        self.folder = home / "landing"
        self.cursor: str | None = None
        self.resources = build_resources(home)

    def tick(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"telemetry": TelemetryLanding(home=str(self.home))},
        )
        result = landing_sensor(context)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
        return list(result.run_requests or [])

    def run(self, requests: list[dg.RunRequest]) -> list[dg.ExecuteInProcessResult]:
        job = defs().resolve_job_def("ingest_landing_batch")
        return [
            job.execute_in_process(
                partition_key=r.partition_key,
                instance=self.instance,
                resources=self.resources,
                tags=r.tags,
                raise_on_error=False,
            )
            for r in requests
        ]

    def drain(self) -> list[dg.ExecuteInProcessResult]:
        results = self.run(self.tick())
        assert all(r.success for r in results)
        return results
