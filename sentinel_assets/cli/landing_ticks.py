"""The landing sensor and the ingestion runs it asks for, driven in this process as the
Dagster daemon drives them (`sentinel stream-demo`, `benchmarks/stream.py`): the runs are
recorded in the given instance, so the UI shows them afterwards."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def quiet_stability_notices() -> None:
    """The definitions load in this process (the sensor ticks here): Dagster's API-stability
    notices are for the project's developers, not for a printout of ticks."""
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)


def sensor_interval_s() -> float:
    """The landing sensor's own `minimum_interval_seconds` (the daemon's tick)."""
    quiet_stability_notices()
    from sentinel_assets.defs.telemetry_sensors import landing_sensor

    return float(landing_sensor.minimum_interval_seconds or 30)


@dataclass(frozen=True)
class IngestedFile:
    batch: str  # the content hash's batch id (a name can come back with new content)
    name: str
    success: bool
    finished_at: float  # epoch seconds


class LandingTicks:
    """One `tick()` = one evaluation of the landing sensor plus the runs it requested."""

    def __init__(self, home: Path, instance: dg.DagsterInstance) -> None:
        quiet_stability_notices()  # before the definitions load
        from sentinel_assets.definitions import run_defs
        from sentinel_assets.defs.resources import build_resources

        self.home, self.instance = home, instance
        self.cursor: str | None = None
        self.due: float | None = None
        self.resources = build_resources(home)
        self.job = run_defs().resolve_job_def("ingest_landing_batch")

    def wait(self, interval: float) -> None:
        """Sleep until the next tick of a fixed schedule, as the daemon evaluates a sensor
        every `interval` seconds from the start of its last tick (the runs of a tick, which
        the daemon launches and does not wait for, do not push the next one back)."""
        now = time.monotonic()
        self.due = now + interval if self.due is None else max(now, self.due + interval)
        time.sleep(max(0.0, self.due - now))

    def requests(self) -> list[dg.RunRequest]:
        """One evaluation of the landing sensor, its cursor kept and its partitions added."""
        from sentinel_assets.defs.telemetry_resources import TelemetryLanding
        from sentinel_assets.defs.telemetry_sensors import landing_sensor

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

    def execute(
        self, requests: list[dg.RunRequest], run_config: dict | None = None
    ) -> list[dg.ExecuteInProcessResult]:
        """The ingestion runs the sensor asked for, one after the other, in this process."""
        return [
            self.job.execute_in_process(
                partition_key=request.partition_key,
                instance=self.instance,
                resources=self.resources,
                tags=request.tags,
                run_config=run_config,
                raise_on_error=False,
            )
            for request in requests
        ]

    def tick(self) -> list[IngestedFile]:
        done = []
        for request in self.requests():
            (run,) = self.execute([request], run_config=QUIET)
            name = request.tags["sentinel/landing_file"]
            done.append(IngestedFile(request.partition_key, name, run.success, time.time()))
        return done
