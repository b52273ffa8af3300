"""The recovery policy, rule by rule, at each threshold and on either side of it."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sentinel_assets.contracts import (
    FLEET_COLUMNS,
    FLEET_DTYPES,
    FLEET_SCHEMA,
    IDENTITY_COLUMNS,
    REASON_CODES,
    RECORD_ID_STRIDE,
    REGION_TABLE,
    RecoveryDecision,
)
from sentinel_assets.defs.config import RecoverySettings
from sentinel_assets.generate import generate_fleet
from sentinel_assets.recovery import RecoveryPolicy, campaign_health, decide_recovery
from sentinel_assets.validation import check_contract

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = RecoveryPolicy()


def device(**overrides) -> dict:
    """A failed device with a transient failure and good telemetry: a textbook retry."""
    values = {
        "region": "eu-west",
        "site": "Lyon",
        "model": "gw-100",
        "hardware_rev": "rev-a",
        "firmware_from": "4.1.0",
        "firmware_to": "4.2.0",
        "update_status": "failed",
        "failure_kind": "download_timeout",
        "commit_state": None,
        "battery_pct": 80.0,
        "battery_voltage_v": 4.0,
        "signal_dbm": -80,
        "temperature_c": 25.0,
        "retry_count": 0,
        "boot_attempts": 0,
        "last_seen_at": AS_OF - timedelta(hours=1),
    }
    return values | overrides


def partial(**overrides) -> dict:
    """A partial update whose new image was written but never booted."""
    return device(update_status="partial", failure_kind=None, commit_state="written") | overrides


def on_trial(boots: int, **overrides) -> dict:
    return partial(commit_state="trial_boot", boot_attempts=boots) | overrides


def pending(**overrides) -> dict:
    return device(update_status="pending", failure_kind=None) | overrides


def success(**overrides) -> dict:
    return device(update_status="success", failure_kind=None) | overrides


def fleet(*devices: dict) -> pl.DataFrame:
    """Devices as a frame that satisfies the fleet contract, numbered within their region."""
    described = [c for c in FLEET_COLUMNS if c not in {*IDENTITY_COLUMNS, "device_id"}]
    codes = {r.name: r.code for r in REGION_TABLE}
    numbers = {r.name: r.number for r in REGION_TABLE}
    sequence = pl.int_range(pl.len(), dtype=pl.Int64).over("region")
    frame = (
        pl.DataFrame(list(devices), schema={c: FLEET_DTYPES[c] for c in described})
        .with_columns(
            (pl.col("region").replace_strict(numbers) * RECORD_ID_STRIDE + sequence).alias(
                "record_id"
            ),
            pl.col("region").alias("partition_key"),
            pl.format(
                "SN-{}-{}",
                pl.col("region").replace_strict(codes),
                sequence.cast(pl.String).str.zfill(8),
            ).alias("device_id"),
        )
        .select(FLEET_COLUMNS)
    )
    report = check_contract(frame.filter(pl.col("region") == "eu-west"), FLEET_SCHEMA)
    assert report.passed, report.failure_cases
    return frame


def decide(*devices: dict, policy: RecoveryPolicy = POLICY) -> pl.DataFrame:
    return decide_recovery(fleet(*devices), policy, as_of=AS_OF)


def decision(one: dict, policy: RecoveryPolicy = POLICY) -> tuple[str, str]:
    [(action, code)] = decide(one, policy=policy).select("action", "reason_code").rows()
    return action, code


# --- rollback guard ------------------------------------------------------------------------


def test_a_written_partial_update_is_rolled_back():
    assert decision(partial()) == ("rollback", "uncommitted_image")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"battery_pct": 30.0}, ("rollback", "uncommitted_image")),  # at the minimum: goes
        ({"battery_pct": 29.9}, ("defer", "low_battery")),
        ({"battery_voltage_v": 3.55}, ("rollback", "uncommitted_image")),
        ({"battery_voltage_v": 3.549}, ("defer", "low_battery")),
        ({"temperature_c": 60.0}, ("rollback", "uncommitted_image")),  # at the limit: goes
        ({"temperature_c": 60.1}, ("defer", "over_temperature")),
    ],
)
def test_the_rollback_guard_at_its_boundaries(overrides, expected):
    assert decision(partial(**overrides)) == expected


def test_a_low_battery_partial_is_deferred_with_the_reason_to_charge():
    [reason] = decide(partial(battery_pct=12.5, battery_voltage_v=3.41))["reason"]
    assert "12.5 %" in reason and "3.41 V" in reason and "charge first" in reason


def test_a_hot_partial_is_told_to_cool_down():
    [reason] = decide(partial(temperature_c=71.0))["reason"]
    assert "71.0 °C" in reason and "cool down" in reason


def test_no_partial_device_of_a_real_fleet_is_rolled_back_below_the_battery_minimums(fleet):
    decisions = decide_recovery(fleet, POLICY, as_of=AS_OF).join(
        fleet.select("record_id", "battery_pct", "battery_voltage_v", "temperature_c"),
        on="record_id",
    )
    rollbacks = decisions.filter(pl.col("action") == "rollback")
    assert rollbacks.height > 0
    assert rollbacks["battery_pct"].min() >= POLICY.min_rollback_battery_pct
    assert rollbacks["battery_voltage_v"].min() >= POLICY.min_rollback_voltage_v
    assert rollbacks["temperature_c"].max() <= POLICY.max_rollback_temperature_c
    low = decisions.filter(
        (pl.col("update_status") == "partial")
        & (pl.col("battery_pct") < POLICY.min_rollback_battery_pct)
    )
    assert low.height > 0
    assert set(low["action"]) <= {"defer", "manual_triage"}


@pytest.mark.parametrize(
    ("boots", "expected"),
    [
        (1, ("defer", "boot_check_running")),
        (2, ("defer", "boot_check_running")),  # max_boot_attempts - 1: the watchdog decides
        (3, ("rollback", "boot_failed")),  # at the limit: stuck, roll back
        (5, ("rollback", "boot_failed")),
    ],
)
def test_a_new_image_on_trial_is_left_to_its_watchdog_until_the_boot_limit(boots, expected):
    assert decision(on_trial(boots)) == expected


def test_a_stuck_image_on_trial_still_needs_the_battery_to_roll_back():
    assert decision(on_trial(4, battery_pct=10.0)) == ("defer", "low_battery")


def test_the_boot_limit_is_configurable():
    assert decision(on_trial(3), RecoveryPolicy(max_boot_attempts=4))[1] == "boot_check_running"


# --- stale devices -------------------------------------------------------------------------


@pytest.mark.parametrize("make", [partial, device])
def test_a_device_silent_just_to_the_limit_is_acted_on(make):
    action, _ = decision(make(last_seen_at=AS_OF - timedelta(hours=72)))
    assert action in {"rollback", "retry"}


@pytest.mark.parametrize("make", [partial, device])
def test_a_device_silent_past_the_limit_is_not_acted_on_blindly(make):
    silent = make(last_seen_at=AS_OF - timedelta(hours=72, minutes=1))
    assert decision(silent) == ("manual_triage", "stale_device")


# --- retry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"retry_count": 2}, ("retry", "transient_failure")),  # max_retries - 1
        ({"retry_count": 3}, ("manual_triage", "retry_limit")),  # limit reached
        ({"signal_dbm": -110}, ("retry", "transient_failure")),  # at the minimum: usable
        ({"signal_dbm": -111}, ("manual_triage", "weak_signal")),
        ({"battery_pct": 20.0}, ("retry", "transient_failure")),
        ({"battery_pct": 19.9}, ("defer", "low_battery")),
        ({"failure_kind": "connection_lost"}, ("retry", "transient_failure")),
        ({"failure_kind": "verification_failed"}, ("manual_triage", "not_retriable")),
        ({"failure_kind": "out_of_storage"}, ("manual_triage", "not_retriable")),
    ],
)
def test_the_retry_rules_at_their_boundaries(overrides, expected):
    assert decision(device(**overrides)) == expected


def test_a_non_retriable_failure_goes_to_triage_even_with_retries_left():
    [reason] = decide(device(failure_kind="verification_failed", retry_count=0))["reason"]
    assert reason == "verification_failed is not retriable: needs a person"


def test_which_failure_kinds_are_retriable_is_config():
    policy = RecoveryPolicy(retriable_failure_kinds=["download_timeout", "out_of_storage"])
    assert decision(device(failure_kind="out_of_storage"), policy)[0] == "retry"
    assert decision(device(failure_kind="connection_lost"), policy)[0] == "manual_triage"


@pytest.mark.parametrize(
    ("retry_count", "minutes"), [(0, 30), (1, 60), (2, 120), (5, 960), (6, 1440), (9, 1440)]
)
def test_retries_back_off_exponentially_up_to_a_day(retry_count, minutes):
    policy = RecoveryPolicy(max_retries=10)
    [next_attempt] = decide(device(retry_count=retry_count), policy=policy)["next_attempt_at"]
    assert next_attempt == AS_OF + timedelta(minutes=minutes)


def test_only_retries_are_scheduled():
    decisions = decide(device(), partial(), device(failure_kind="verification_failed"))
    scheduled = decisions.filter(pl.col("next_attempt_at").is_not_null())
    assert scheduled["action"].to_list() == ["retry"]


# --- campaign abort ------------------------------------------------------------------------


def region(attempted: int, failures: int, pending_devices: int, name: str = "eu-west") -> list:
    return (
        [device(region=name)] * failures
        + [success(region=name)] * (attempted - failures)
        + [pending(region=name)] * pending_devices
    )


ABORT = RecoveryPolicy(abort_failure_rate=0.25, abort_min_attempted=100)


@pytest.mark.parametrize(
    ("attempted", "failures", "halted"),
    [
        (100, 25, True),  # exactly the threshold at exactly the minimum
        (100, 24, False),  # just below the threshold
        (99, 99, False),  # every attempt failed, but fewer than the minimum attempted
        (101, 26, True),
        (200, 49, False),
        (200, 50, True),
    ],
)
def test_the_campaign_halts_exactly_at_threshold_and_minimum(attempted, failures, halted):
    health = campaign_health(fleet(*region(attempted, failures, 5)), ABORT)
    assert health["halted"].to_list() == [halted]
    assert health.select("attempted", "failures").row(0) == (attempted, failures)


def test_a_halted_campaign_holds_pending_updates_and_retries_and_says_why():
    decisions = decide(*region(100, 25, 7), partial(), policy=ABORT)
    held = decisions.filter(pl.col("action") == "hold")
    assert held.filter(pl.col("update_status") == "pending").height == 7
    assert set(held["update_status"]) == {"pending", "failed"}
    assert set(held["reason_code"]) == {"campaign_halted"}
    assert (
        "26 of 101 attempted updates failed (25.7 % >= 25.0 %)" in held["reason"][0]
    )  # partial counts
    # Like an aborted deployment, a device mid-update still finishes by rolling back.
    assert decisions.filter(pl.col("update_status") == "partial")["action"].to_list() == [
        "rollback"
    ]


def test_a_running_campaign_leaves_pending_updates_alone():
    decisions = decide(*region(100, 24, 7), policy=ABORT)
    assert "hold" not in decisions["action"].to_list()
    assert decisions.filter(pl.col("update_status") == "pending").height == 0
    assert set(decisions["action"]) == {"retry"}


def test_the_halt_is_per_region():
    both = [*region(100, 30, 3, "eu-west"), *region(100, 10, 3, "us-east")]
    health = campaign_health(fleet(*both), ABORT)
    assert dict(health.select("region", "halted").iter_rows()) == {
        "eu-west": True,
        "us-east": False,
    }


def test_a_triage_verdict_wins_over_a_hold_in_a_halted_region():
    decisions = decide(
        *region(100, 25, 0), device(failure_kind="verification_failed"), policy=ABORT
    )
    assert decisions.filter(pl.col("failure_kind") == "verification_failed")["action"][0] == (
        "manual_triage"
    )


# --- the policy as one validated config object ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_rollback_battery_pct", 101.0),
        ("min_rollback_voltage_v", 1.0),
        ("max_rollback_temperature_c", 90.0),
        ("max_boot_attempts", 0),
        ("max_retries", 11),
        ("max_retries", -1),
        ("min_signal_dbm", 0.0),
        ("retry_backoff_minutes", 0.0),
        ("retry_backoff_max_minutes", 10.0),
        ("stale_after_hours", -1.0),
        ("abort_failure_rate", 0.0),
        ("abort_failure_rate", 1.5),
        ("abort_min_attempted", 0),
    ],
)
def test_an_invalid_policy_value_is_rejected_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        RecoveryPolicy(**{field: value})
    with pytest.raises(ValueError, match=field):
        RecoverySettings(**{field: value})


def test_an_unknown_failure_kind_is_rejected_by_name():
    named = r"retriable_failure_kinds[\s\S]*unknown failure kind.*'flaky_wifi'"
    with pytest.raises(ValueError, match=named):
        RecoverySettings(retriable_failure_kinds=["download_timeout", "flaky_wifi"])


def test_the_dagster_settings_are_the_policy_with_its_defaults_and_descriptions():
    settings = RecoverySettings()
    assert isinstance(settings, RecoveryPolicy)
    assert settings.model_dump() == RecoveryPolicy().model_dump()
    assert set(RecoverySettings.model_fields) == set(RecoveryPolicy.model_fields)
    assert all(f.description for f in RecoverySettings.model_fields.values())


# --- on a generated fleet ----------------------------------------------------------------------


def test_the_generator_gives_partial_devices_a_commit_state_and_boot_count(fleet):
    partials = fleet.filter(pl.col("update_status") == "partial")
    assert partials["commit_state"].null_count() == 0
    assert set(partials["commit_state"]) == {"written", "trial_boot"}
    trial = partials.filter(pl.col("commit_state") == "trial_boot")
    assert trial["boot_attempts"].min() >= 1
    others = fleet.filter(pl.col("commit_state").is_null() | (pl.col("commit_state") == "written"))
    assert others["boot_attempts"].max() == 0


def test_decisions_on_a_generated_fleet_meet_their_contract_and_cover_every_unhealthy_device():
    big = generate_fleet("af-south", 5_000, seed=3, as_of=AS_OF)
    decisions = decide_recovery(big, POLICY, as_of=AS_OF)
    assert check_contract(decisions, RecoveryDecision.to_schema()).passed
    unhealthy = big.filter(pl.col("update_status").is_in(["partial", "failed"]))
    assert set(unhealthy["record_id"]) <= set(decisions["record_id"])
    assert set(decisions["reason_code"]) <= set(REASON_CODES)
    assert decisions.filter(pl.col("update_status") == "success").height == 0


def test_the_spine_rule_holds_on_a_generated_fleet(fleet):
    """Partial: rollback, never while the battery is too low. Failed: retry under the limit
    with a usable signal, else triage (when fresh, retriable and the campaign runs)."""
    decisions = decide_recovery(fleet, POLICY, as_of=AS_OF).join(
        fleet.select("record_id", "battery_pct", "signal_dbm", "retry_count", "last_seen_at"),
        on="record_id",
    )
    fresh = pl.col("last_seen_at") >= AS_OF - timedelta(hours=POLICY.stale_after_hours)
    failed = decisions.filter(
        fresh
        & (pl.col("update_status") == "failed")
        & pl.col("failure_kind").is_in(list(POLICY.retriable_failure_kinds))
        & (pl.col("battery_pct") >= POLICY.min_retry_battery_pct)
    )
    retriable = (pl.col("retry_count") < POLICY.max_retries) & (
        pl.col("signal_dbm") >= POLICY.min_signal_dbm
    )
    assert set(failed.filter(retriable)["action"]) == {"retry"}
    assert set(failed.filter(~retriable)["action"]) == {"manual_triage"}


def test_decisions_read_the_campaign_status_they_are_given(fleet):
    campaign = campaign_health(fleet, POLICY)
    assert not campaign["halted"].any()
    from_input = decide_recovery(fleet, POLICY, as_of=AS_OF, campaign=campaign)
    assert from_input.equals(decide_recovery(fleet, POLICY, as_of=AS_OF))
    # a halt recorded in campaign_status holds the region's pending updates and retries
    halted = decide_recovery(
        fleet, POLICY, as_of=AS_OF, campaign=campaign.with_columns(halted=pl.lit(True))
    )
    pending = fleet.filter(pl.col("update_status") == "pending")
    held = halted.filter(pl.col("action") == "hold")
    assert set(pending["record_id"]) <= set(held["record_id"])
    assert halted.filter(pl.col("action") == "retry").height == 0
