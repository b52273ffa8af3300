"""Where telemetry lands and which fleet it belongs to: the `telemetry` resource."""

from datetime import datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from sentinel_assets import paths
from sentinel_assets.contracts import MODELS, REGIONS
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.fleet import FleetSnapshot, fleet_from_events


class TelemetryLanding(dg.ConfigurableResource):
    """The landing folder (default `$SENTINEL_HOME/landing`), the lake beside it, and the
    configured fleet's vocabulary: records of other regions or models are dead letters."""

    home: str = Field(description="The data folder ($SENTINEL_HOME).")
    landing_dir: str = Field(default="", description="Landing folder; empty = <home>/landing.")
    regions: list[str] = Field(default=list(REGIONS), description="Regions of the fleet.")
    models: list[str] = Field(default=list(MODELS), description="Device models of the fleet.")

    @property
    def landing(self) -> Path:
        return Path(self.landing_dir) if self.landing_dir else paths.landing_root(Path(self.home))

    @property
    def lake(self) -> Path:
        return paths.lake_root(Path(self.home))

    def fleet(self, region: str, as_of: datetime) -> FleetSnapshot:
        """`raw_fleet` from telemetry: the latest event per device of the region."""
        return fleet_from_events(lake.scan_events(self.lake), region, as_of)
