"""Properties of `recovery.decide_recovery` over arbitrary contract-valid fleets and policies.

Fleets are drawn from the contract (`contracts.BOUNDS`, the allowed values and the cross-field
rules): a region's devices keep the identity columns `generate.generate_fleet` gives them
(ids, model, firmware, ...; any column added to the fleet contract comes along with them),
and hypothesis draws each device's update state and readings. The invariants checked here
hold for every policy the policy's own validation accepts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import cache

import pandera.polars as pa
import polars as pl
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st

from sentinel_assets.contracts import (
    BOUNDS,
    COMMIT_STATES,
    FAILURE_KINDS,
    FLEET_DTYPES,
    FLEET_SCHEMA,
    REGIONS,
    UPDATE_STATUSES,
    RecoveryDecision,
)
from sentinel_assets.generate import generate_fleet
from sentinel_assets.recovery import RecoveryPolicy, decide_recovery
from sentinel_assets.validation import check_contract

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
MAX_DEVICES = 20  # per region and example: small frames, many examples
MAX_SILENCE = timedelta(days=30)
RECENT = timedelta(hours=6)
UNHEALTHY = ("partial", "failed")
# Readings drawn anywhere within their contract bounds; boot_attempts follows commit_state.
READINGS = tuple(column for column in BOUNDS if column != "boot_attempts")
# The policy's own validated range for max_retries (AWS IoT Jobs allows 0-10).
MAX_RETRIES_ALLOWED = 10

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A Pandera validation takes tens of milliseconds: fewer examples where each runs some.
CONTRACT_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=15)


# --- strategies ----------------------------------------------------------------------------


def within(column: str) -> st.SearchStrategy[float] | st.SearchStrategy[int]:
    """Any value of the column's contract bounds, in the column's contract type."""
    bounds = BOUNDS[column]
    if FLEET_DTYPES[column].is_integer():
        return st.integers(math.ceil(bounds.low), math.floor(bounds.high))
    return st.floats(bounds.low, bounds.high, allow_nan=False, allow_infinity=False)


def reading(column: str) -> st.SearchStrategy[float] | st.SearchStrategy[int]:
    """Within the contract bounds; retry counts often a few, so that retries (below a
    policy's limit) are drawn as well as devices past it."""
    if column == "retry_count":
        low = math.ceil(BOUNDS[column].low)
        return st.integers(low, low + 3) | within(column)
    return within(column)


# Three devices in four reported lately; the others were silent for up to a month.
silences = st.sampled_from([RECENT, RECENT, RECENT, MAX_SILENCE]).flatmap(
    lambda longest: st.timedeltas(timedelta(0), longest)
)


@st.composite
def device_states(draw: st.DrawFn) -> dict[str, object]:
    """One device's update state and readings, keeping the contract's cross-field rules:
    only a failed update has a failure kind, only a partial one a commit state, and only a
    new image on trial boot has boots."""
    status = draw(st.sampled_from(UPDATE_STATUSES))
    commit_state = draw(st.sampled_from(COMMIT_STATES)) if status == "partial" else None
    boots = BOUNDS["boot_attempts"]
    return {
        "update_status": status,
        "failure_kind": draw(st.sampled_from(FAILURE_KINDS)) if status == "failed" else None,
        "commit_state": commit_state,
        "boot_attempts": (
            draw(st.integers(max(1, math.ceil(boots.low)), math.floor(boots.high)))
            if commit_state == "trial_boot"
            else 0
        ),
        **{column: draw(reading(column)) for column in READINGS},
        "last_seen_at": AS_OF - draw(silences),
    }


@cache
def identities(region: str) -> pl.DataFrame:
    """The region's devices as the generator makes them; their states get replaced."""
    return generate_fleet(region, MAX_DEVICES, seed=0, as_of=AS_OF)


def region_fleet(region: str, states: list[dict[str, object]]) -> pl.DataFrame:
    base = identities(region).head(len(states))
    drawn = pl.DataFrame(states, schema={column: FLEET_DTYPES[column] for column in states[0]})
    return base.with_columns(drawn.get_columns()).select(base.columns)


@st.composite
def fleets(draw: st.DrawFn) -> pl.DataFrame:
    """One to three regions' fleets, each satisfying the fleet contract."""
    regions = draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True))
    frames = []
    for region in regions:
        devices = draw(st.integers(1, MAX_DEVICES))
        states = draw(st.lists(device_states(), min_size=devices, max_size=devices))
        frames.append(region_fleet(region, states))
    return pl.concat(frames)


def hours(span: timedelta) -> float:
    return span.total_seconds() / 3600


def between(column: str) -> st.SearchStrategy[float]:
    bounds = BOUNDS[column]
    return st.floats(bounds.low, bounds.high, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> RecoveryPolicy:
    """Any policy its own validation accepts: thresholds within the readings' bounds."""
    backoff = draw(st.floats(1, 24 * 60))
    values = {
        "min_rollback_battery_pct": draw(between("battery_pct")),
        "min_rollback_voltage_v": draw(between("battery_voltage_v")),
        "max_rollback_temperature_c": draw(between("temperature_c")),
        "max_boot_attempts": draw(st.integers(1, math.floor(BOUNDS["boot_attempts"].high))),
        "min_retry_battery_pct": draw(between("battery_pct")),
        "max_retries": draw(st.integers(0, MAX_RETRIES_ALLOWED)),
        "min_signal_dbm": draw(between("signal_dbm")),
        "retriable_failure_kinds": tuple(kind for kind in FAILURE_KINDS if draw(st.booleans())),
        "retry_backoff_minutes": backoff,
        "retry_backoff_max_minutes": backoff * draw(st.floats(1, 64)),
        # Devices that reported lately are never stale; others may be.
        "stale_after_hours": draw(st.floats(hours(RECENT), hours(MAX_SILENCE))),
        "abort_failure_rate": draw(st.floats(0, 1, exclude_min=True)),
        "abort_min_attempted": draw(st.integers(1, MAX_DEVICES)),
    }
    try:
        return RecoveryPolicy(**values)
    except ValueError:  # pydantic's ValidationError is a ValueError too
        reject()


# --- the oracle: the rules as the README states them, row by row -----------------------------


def halted_regions(fleet: pl.DataFrame, policy: RecoveryPolicy) -> set[str]:
    """Regions where at least `abort_min_attempted` devices attempted the update and at least
    `abort_failure_rate` of those did not succeed."""
    halted = set()
    for (region,), part in fleet.partition_by("region", as_dict=True).items():
        statuses = part["update_status"].to_list()
        attempted = sum(status != "pending" for status in statuses)
        failures = sum(status in UNHEALTHY for status in statuses)
        if attempted >= policy.abort_min_attempted and (
            failures / attempted >= policy.abort_failure_rate
        ):
            halted.add(region)
    return halted


def unhealthy_devices(fleet: pl.DataFrame, halted: set[str]) -> set[str]:
    return {
        row["device_id"]
        for row in fleet.iter_rows(named=True)
        if row["update_status"] in UNHEALTHY
        or (row["update_status"] == "pending" and row["region"] in halted)
    }


def decided(fleet: pl.DataFrame, policy: RecoveryPolicy) -> list[dict[str, object]]:
    """Each decision with the device's readings beside it."""
    decisions = decide_recovery(fleet, policy, as_of=AS_OF)
    readings = fleet.select("device_id", *READINGS, "boot_attempts", "last_seen_at")
    return decisions.join(readings, on="device_id", how="left").to_dicts()


def hours_silent(row: dict[str, object]) -> float:
    return hours(AS_OF - row["last_seen_at"])


# --- properties ------------------------------------------------------------------------------


def assert_meets(frame: pl.DataFrame, contract: pa.DataFrameSchema) -> None:
    """Per region, as the pipeline stores them (one shard per region)."""
    for part in frame.partition_by("region"):
        report = check_contract(part, contract)
        assert report.passed, report.failure_cases


@CONTRACT_SETTINGS
@given(fleet=fleets())
def test_the_drawn_fleets_satisfy_the_fleet_contract(fleet: pl.DataFrame):
    assert_meets(fleet, FLEET_SCHEMA)


@CONTRACT_SETTINGS
@given(fleet=fleets(), policy=policies())
def test_the_decisions_satisfy_their_contract(fleet: pl.DataFrame, policy: RecoveryPolicy):
    assert_meets(decide_recovery(fleet, policy, as_of=AS_OF), RecoveryDecision.to_schema())


@PROPERTY_SETTINGS
@given(fleet=fleets(), policy=policies())
def test_every_unhealthy_device_gets_exactly_one_decision_and_no_healthy_one_any(
    fleet: pl.DataFrame, policy: RecoveryPolicy
):
    decisions = decide_recovery(fleet, policy, as_of=AS_OF)
    devices = decisions["device_id"].to_list()
    assert len(devices) == len(set(devices))  # at most one each
    assert set(devices) == unhealthy_devices(fleet, halted_regions(fleet, policy))


@PROPERTY_SETTINGS
@given(fleet=fleets(), policy=policies())
def test_no_rollback_below_any_guard(fleet: pl.DataFrame, policy: RecoveryPolicy):
    for row in decided(fleet, policy):
        if row["action"] != "rollback":
            continue
        assert row["update_status"] == "partial", row
        assert row["battery_pct"] >= policy.min_rollback_battery_pct, row
        assert row["battery_voltage_v"] >= policy.min_rollback_voltage_v, row
        assert row["temperature_c"] <= policy.max_rollback_temperature_c, row
        if row["commit_state"] == "trial_boot":
            assert row["boot_attempts"] >= policy.max_boot_attempts, row
        # Silence is measured in whole minutes.
        assert hours_silent(row) < policy.stale_after_hours + 1 / 60, row


@PROPERTY_SETTINGS
@given(fleet=fleets(), policy=policies())
def test_no_retry_below_any_guard_and_each_scheduled_within_the_backoff(
    fleet: pl.DataFrame, policy: RecoveryPolicy
):
    halted = halted_regions(fleet, policy)
    first_wait = timedelta(minutes=policy.retry_backoff_minutes)
    longest_wait = timedelta(minutes=policy.retry_backoff_max_minutes)
    for row in decided(fleet, policy):
        if row["action"] != "retry":
            continue
        assert row["update_status"] == "failed", row
        assert row["region"] not in halted, row
        assert row["failure_kind"] in policy.retriable_failure_kinds, row
        assert row["retry_count"] < policy.max_retries, row
        assert row["battery_pct"] >= policy.min_retry_battery_pct, row
        assert row["signal_dbm"] >= policy.min_signal_dbm, row
        assert hours_silent(row) < policy.stale_after_hours + 1 / 60, row
        wait = row["next_attempt_at"] - AS_OF
        assert first_wait - timedelta(seconds=1) <= wait <= longest_wait + timedelta(seconds=1)


@PROPERTY_SETTINGS
@given(fleet=fleets(), policy=policies())
def test_a_halted_region_holds_its_pending_updates_and_never_retries(
    fleet: pl.DataFrame, policy: RecoveryPolicy
):
    halted = halted_regions(fleet, policy)
    assume(halted)
    for row in decided(fleet, policy):
        if row["region"] not in halted:
            assert row["update_status"] != "pending", row  # a running campaign holds nothing
            continue
        assert row["action"] != "retry", row
        if row["update_status"] == "pending":
            assert (row["action"], row["reason_code"]) == ("hold", "campaign_halted"), row
