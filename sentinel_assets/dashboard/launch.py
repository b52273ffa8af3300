"""Send a recovery policy back to Dagster: one `fleet_refresh` run per chosen region,
launched through the webserver's GraphQL API with the policy as run config; and anomaly
thresholds: one `telemetry_timeseries_refresh` run per chosen date x region partition with
the time-series settings as run config.

Plain HTTP (the standard library) against the documented GraphQL schema: the dashboard does
not import Dagster. Runs go through the instance's run coordinator like a launch from the UI
(queued for the daemon by default; started at once with the DefaultRunCoordinator).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sentinel_assets.contracts import validate_region
from sentinel_assets.dashboard.whatif import policy_values
from sentinel_assets.recovery import RecoveryPolicy
from sentinel_assets.timeseries.settings import TimeseriesSettings

JOB = "fleet_refresh"
TIMESERIES_JOB = "telemetry_timeseries_refresh"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
LAUNCH_TAG = "sentinel/launched_from"

_REPOSITORIES_QUERY = """
query SentinelRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on PythonError { message }
  }
}
"""

_LAUNCH_RUN_MUTATION = """
mutation SentinelLaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""


class LaunchError(Exception):
    """The run could not be launched; the message says why in one sentence."""


def ui_url() -> str:
    """The Dagster UI the dashboard talks to: `$SENTINEL_UI_URL`, else 127.0.0.1:3000."""
    return (os.environ.get("SENTINEL_UI_URL") or DEFAULT_UI_URL).rstrip("/")


def run_config(policy: RecoveryPolicy) -> dict[str, Any]:
    """`fleet_refresh` run config carrying every field of the policy (`settings.recovery`)."""
    return {"resources": {"settings": {"config": {"recovery": policy_values(policy)}}}}


def run_url(base_url: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/runs/{run_id}"


@dataclass(frozen=True)
class LaunchedRun:
    region: str
    run_id: str
    url: str


def graphql(
    base_url: str, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 30.0
) -> dict[str, Any]:
    """POST one GraphQL request; LaunchError when the server cannot be reached or errs."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/graphql",
        data=body,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise LaunchError(
            f"Cannot reach the Dagster webserver at {base_url} ({reason}): "
            "start it with `make ui` or set SENTINEL_UI_URL."
        ) from error
    except json.JSONDecodeError as error:
        raise LaunchError(f"{base_url} did not answer like a Dagster webserver.") from error
    if payload.get("errors"):
        messages = "; ".join(e.get("message", str(e)) for e in payload["errors"])
        raise LaunchError(f"The Dagster webserver refused the request: {messages}.")
    return payload["data"]


def find_job(base_url: str, job: str = JOB) -> tuple[str, str]:
    """(code location, repository) that defines `job`."""
    result = graphql(base_url, _REPOSITORIES_QUERY)["repositoriesOrError"]
    if result["__typename"] != "RepositoryConnection":
        raise LaunchError(
            f"The Dagster webserver could not list its code: {result.get('message')}."
        )
    matches = [
        (node["location"]["name"], node["name"])
        for node in result["nodes"]
        if any(j["name"] == job for j in node["jobs"])
    ]
    if len(matches) != 1:
        where = "no code location" if not matches else f"{len(matches)} code locations"
        raise LaunchError(f"Job {job} is defined in {where} of the webserver at {base_url}.")
    return matches[0]


def launch_policy(
    base_url: str,
    policy: RecoveryPolicy,
    regions: Sequence[str],
    *,
    tags: Mapping[str, str] | None = None,
    link_url: str | None = None,
) -> list[LaunchedRun]:
    """Launch `fleet_refresh` for each region with `policy`; the runs and their UI links."""
    partitions = [(region, {"dagster/partition": region}) for region in _valid_regions(regions)]
    return _launch(base_url, JOB, run_config(policy), partitions, tags, link_url)


def timeseries_run_config(settings: TimeseriesSettings) -> dict[str, Any]:
    """`telemetry_timeseries_refresh` run config carrying every time-series setting
    (`resources.timeseries.config.settings`), the anomaly thresholds among them."""
    return {"resources": {"timeseries": {"config": {"settings": settings.model_dump()}}}}


def partition_tags(day: date, region: str) -> dict[str, str]:
    """Run tags of one date x region partition: the key and each of its two dimensions."""
    key = f"{day}|{region}"
    return {
        "dagster/partition": key,
        "dagster/partition/date": str(day),
        "dagster/partition/region": region,
    }


def launch_timeseries(
    base_url: str,
    settings: TimeseriesSettings,
    day: date,
    regions: Sequence[str],
    *,
    tags: Mapping[str, str] | None = None,
    link_url: str | None = None,
) -> list[LaunchedRun]:
    """Launch `telemetry_timeseries_refresh` for `day` and each region with `settings`."""
    partitions = [(region, partition_tags(day, region)) for region in _valid_regions(regions)]
    config = timeseries_run_config(settings)
    return _launch(base_url, TIMESERIES_JOB, config, partitions, tags, link_url)


def _valid_regions(regions: Sequence[str]) -> list[str]:
    if not regions:
        raise LaunchError("Choose at least one region to launch.")
    for region in regions:
        try:
            validate_region(region)
        except ValueError as error:
            raise LaunchError(f"{error}.") from None
    return list(regions)


def _launch(
    base_url: str,
    job: str,
    config: Mapping[str, Any],
    partitions: Sequence[tuple[str, Mapping[str, str]]],
    tags: Mapping[str, str] | None,
    link_url: str | None,
) -> list[LaunchedRun]:
    """One run of `job` per (region, partition tags), all with `config`."""
    location, repository = find_job(base_url, job)
    launched = []
    for region, partition in partitions:
        all_tags = {LAUNCH_TAG: "dashboard", **(tags or {}), **partition}
        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": job,
            },
            "runConfigData": dict(config),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]},
        }
        result = graphql(base_url, _LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
        kind = result["__typename"]
        if kind != "LaunchRunSuccess":
            errors = result.get("errors") or [{"message": result.get("message", kind)}]
            detail = "; ".join(e["message"] for e in errors)
            raise LaunchError(f"Dagster refused the {region} run ({kind}): {detail}.")
        run_id = result["run"]["runId"]
        launched.append(LaunchedRun(region, run_id, run_url(link_url or base_url, run_id)))
    return launched
