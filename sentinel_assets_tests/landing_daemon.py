"""The landing sensor and the ingestion runs it asks for, driven in process as the Dagster
daemon would drive them (shared by the telemetry and dashboard tests; the same driver as
`sentinel stream-demo`'s)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sentinel_assets.cli.landing_ticks import LandingTicks


class Landing:
    """Drives the sensor and the runs it asks for, like the daemon would."""

    def __init__(self, home: Path, instance: dg.DagsterInstance) -> None:
        self.home, self.instance = home, instance
        self.folder = home / "landing"
        self.ticks = LandingTicks(home, instance)

    @property
    def resources(self) -> dict:
        return self.ticks.resources

    @property
    def cursor(self) -> str | None:
        return self.ticks.cursor

    @cursor.setter
    def cursor(self, value: str | None) -> None:
        self.ticks.cursor = value

    def tick(self) -> list[dg.RunRequest]:
        return self.ticks.requests()

    def run(self, requests: list[dg.RunRequest]) -> list[dg.ExecuteInProcessResult]:
        return self.ticks.execute(requests)

    def drain(self) -> list[dg.ExecuteInProcessResult]:
        results = self.run(self.tick())
        assert all(r.success for r in results)
        return results
