"""The fleet refresh on a cron, and the regional report after every refresh or backfill.

The schedule (off until a user turns it on) requests one `fleet_refresh` run per region
partition. A sensor then launches `regional_report` once every region run of that tick has
succeeded, and does the same for a backfill of any subset of regions launched from the UI
or with `dagster job backfill`. One report per refresh, only over shards that passed their
blocking checks: a failed region withholds the report (its alert says why). The rule
itself is `sentinel_assets.refresh.report_verdict`, shared with `sentinel demo`.

Eager declarative automation on the report would instead fire on any partial update (also
after a region whose blocking check failed) and never while any region is still missing.
"""

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from sentinel_assets.defs.assets import REPORT_GROUP
from sentinel_assets.defs.jobs import fleet_refresh, regional_report
from sentinel_assets.defs.partitions import PARTITION_TAG, region_partitions
from sentinel_assets.refresh import REPORT, WAIT, WITHHELD, RegionRun, report_verdict

CRON_ENV = "SENTINEL_REFRESH_CRON"
TIMEZONE_ENV = "SENTINEL_REFRESH_TIMEZONE"
DEFAULT_CRON = "0 3 * * *"  # daily, 03:00
DEFAULT_TIMEZONE = "UTC"

REFRESH_TAG = "sentinel/refresh"
REFRESH_SIZE_TAG = "sentinel/refresh_size"  # regions the tick requested, shown on each run
AFTER_TAG = "sentinel/report_after"
BACKFILL_TAG = "dagster/backfill"
# Refreshes older than this are no longer followed by a report (a daily cron fits in it).
FOLLOW_UP_LOOKBACK = timedelta(days=2)
RUNS_READ = 1000
REPORTED_KEPT = 200
# Backfill statuses by name: the enum is not part of Dagster's public API.
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS"}
BACKFILL_RUNNING = {"REQUESTED"}


def refresh_cron() -> str:
    """`$SENTINEL_REFRESH_CRON`, else daily at 03:00."""
    return os.environ.get(CRON_ENV, "").strip() or DEFAULT_CRON


def refresh_timezone() -> str:
    return os.environ.get(TIMEZONE_ENV, "").strip() or DEFAULT_TIMEZONE


def tick_id(context: dg.ScheduleEvaluationContext) -> str:
    moment = context.scheduled_execution_time or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def build_refresh_schedule(
    cron: str | None = None, timezone: str | None = None
) -> dg.ScheduleDefinition:
    """The schedule for a cron (default from the environment); a bad cron names its variable."""
    cron, timezone = cron or refresh_cron(), timezone or refresh_timezone()

    def fleet_refresh_schedule(context: dg.ScheduleEvaluationContext):
        """One run per region; the run key makes a re-evaluated tick launch nothing twice."""
        tick = tick_id(context)
        regions = region_partitions.get_partition_keys()
        for region in regions:
            yield dg.RunRequest(
                run_key=f"{tick}/{region}",
                partition_key=region,
                tags={REFRESH_TAG: tick, REFRESH_SIZE_TAG: str(len(regions))},
            )

    try:
        return dg.schedule(
            cron_schedule=cron,
            job=fleet_refresh,
            name="fleet_refresh_schedule",
            execution_timezone=timezone,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description=f"Every region partition of the fleet, then the regional report "
            f"(cron from ${CRON_ENV}, timezone from ${TIMEZONE_ENV}).",
        )(fleet_refresh_schedule)
    except dg.DagsterInvalidDefinitionError as error:
        raise ValueError(f"{CRON_ENV}={cron!r} / {TIMEZONE_ENV}={timezone!r}: {error}") from None


def refresh_group(run: dg.DagsterRun) -> str | None:
    """Which refresh a region run belongs to: a schedule tick or a backfill, if either."""
    if PARTITION_TAG not in run.tags:
        return None
    if REFRESH_TAG in run.tags:
        return f"schedule:{run.tags[REFRESH_TAG]}"
    if BACKFILL_TAG in run.tags:
        return f"backfill:{run.tags[BACKFILL_TAG]}"
    return None


def latest_by_partition(runs: Sequence[dg.DagsterRun]) -> dict[str, dg.DagsterRun]:
    """The newest run of each region (`runs` newest first): a retried run replaces its parent."""
    latest: dict[str, dg.DagsterRun] = {}
    for run in runs:
        latest.setdefault(run.tags[PARTITION_TAG], run)
    return latest


def region_run(run: dg.DagsterRun) -> RegionRun:
    if not run.is_finished:
        return RegionRun.RUNNING
    return RegionRun.SUCCEEDED if run.is_success else RegionRun.FAILED


def group_verdict(
    instance: dg.DagsterInstance,
    group: str,
    runs: Sequence[dg.DagsterRun],
    report_keys: set[dg.AssetKey],
) -> str:
    """`ignore` (the backfill makes its own report), `wait` or `withheld: backfill ...` from
    the backfill's own state, else the refresh rule's verdict over its regions' latest runs."""
    latest = {region: region_run(run) for region, run in latest_by_partition(runs).items()}
    kind, _, ident = group.partition(":")
    if kind == "schedule":
        expected = region_partitions.get_partition_keys()
    else:
        backfill = instance.get_backfill(ident)
        if backfill is None or report_keys & set(backfill.asset_selection or []):
            return "ignore"
        status = backfill.status.value
        if status in BACKFILL_RUNNING:
            return WAIT
        if status not in BACKFILL_DONE:
            return f"{WITHHELD}: backfill {status.lower()}"
        expected = backfill.partition_names or []
    return report_verdict(expected, latest)


def refresh_groups(runs: Sequence[dg.DagsterRun]) -> Mapping[str, list[dg.DagsterRun]]:
    groups: dict[str, list[dg.DagsterRun]] = {}
    for run in runs:
        group = refresh_group(run)
        if group:
            groups.setdefault(group, []).append(run)
    return groups


@dg.sensor(
    name="regional_report_after_refresh",
    job=regional_report,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches regional_report once every region run of a fleet_refresh_schedule "
    "tick, or of a backfill of region partitions, has succeeded.",
)
def regional_report_after_refresh(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Runs by default: it acts only after a refresh somebody started (schedule or backfill)."""
    reported: list[str] = json.loads(context.cursor) if context.cursor else []
    since = datetime.now(UTC) - FOLLOW_UP_LOOKBACK
    runs = context.instance.get_runs(dg.RunsFilter(created_after=since), limit=RUNS_READ)
    report_keys = set(
        dg.AssetSelection.groups(REPORT_GROUP).resolve(context.repository_def.asset_graph)
    )
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    for group, members in refresh_groups(runs).items():
        if group in reported:
            continue
        verdict = group_verdict(context.instance, group, members, report_keys)
        if verdict == REPORT:
            requests.append(
                dg.RunRequest(run_key=f"regional_report/{group}", tags={AFTER_TAG: group})
            )
            reported.append(group)
        elif verdict != "ignore":
            notes.append(f"{group} {verdict}")
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(reported[-REPORTED_KEPT:]),
        skip_reason=None if requests else "; ".join(notes) or "no refresh waiting for its report",
    )


@dg.definitions
def refresh_automation() -> dg.Definitions:
    """The schedule (its cron and timezone read from the environment when the definitions
    load, at each code-location reload, not when this module is imported) and the sensor that
    follows each refresh with the report. A module with a `@dg.definitions` function
    contributes only what the function returns."""
    return dg.Definitions(
        schedules=[build_refresh_schedule()], sensors=[regional_report_after_refresh]
    )
