"""The outcome simulation: seeded, one outcome per device, odds that follow the telemetry."""

from datetime import UTC, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel_assets.contracts import RecoveryOutcome, first_record_id
from sentinel_assets.generate import generate_fleet
from sentinel_assets.outcomes import (
    OutcomeOdds,
    device_draws,
    simulate_outcomes,
    status_counts,
    status_summary,
    success_probability,
)
from sentinel_assets.recovery import RecoveryPolicy, decide_recovery
from sentinel_assets.validation import check_contract

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
OUTCOME_SCHEMA = RecoveryOutcome.to_schema()


@pytest.fixture(scope="module")
def applied() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(fleet, decisions, outcomes) of a 6,000-device region whose campaign runs."""
    fleet = generate_fleet("us-west", 6_000, seed=7, as_of=AS_OF)
    decisions = decide_recovery(fleet, RecoveryPolicy(), as_of=AS_OF)
    return fleet, decisions, simulate_outcomes(fleet, decisions, seed=7)


def test_outcomes_meet_their_contract_one_row_per_device(applied):
    fleet, _, outcomes = applied
    report = check_contract(outcomes, OUTCOME_SCHEMA)
    assert report.passed, report.failure_cases
    assert outcomes.height == fleet.height
    assert outcomes["record_id"].sort().equals(fleet["record_id"].sort())


def test_the_same_seed_gives_the_same_outcome_and_another_seed_another(applied):
    fleet, decisions, outcomes = applied
    assert_frame_equal(outcomes, simulate_outcomes(fleet, decisions, seed=7))
    other = simulate_outcomes(fleet, decisions, seed=8)
    assert not other["status_after"].equals(outcomes["status_after"])


def test_shuffling_the_fleet_or_its_decisions_changes_no_outcome(applied):
    fleet, decisions, outcomes = applied
    shuffled = simulate_outcomes(
        fleet.sample(fraction=1.0, shuffle=True, seed=1),
        decisions.sample(fraction=1.0, shuffle=True, seed=2),
        seed=7,
    )
    assert_frame_equal(shuffled.sort("record_id"), outcomes.sort("record_id"))


def test_a_devices_fate_does_not_depend_on_row_order_or_fleet_size():
    ids = pl.Series(range(1_000), dtype=pl.Int64) + first_record_id("eu-west")
    draws = device_draws(ids, seed=3)
    assert device_draws(ids[:10], seed=3).equals(draws[:10])
    assert device_draws(ids.reverse(), seed=3).equals(draws.reverse())
    # the same sequence numbers in another region are other devices: other draws
    other_region = device_draws(ids - first_record_id("eu-west") + first_record_id("af-south"), 3)
    assert not other_region.equals(draws)
    assert not device_draws(ids, seed=4).equals(draws)
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.05


@pytest.mark.parametrize(
    ("action", "possible"),
    [
        ("retry", {"recovered", "still_failed"}),
        ("rollback", {"rolled_back", "still_failed"}),
        ("defer", {"deferred"}),
        ("manual_triage", {"in_triage"}),
    ],
)
def test_each_action_leads_only_to_its_outcomes(applied, action, possible):
    _, _, outcomes = applied
    reached = set(outcomes.filter(pl.col("action") == action)["status_after"])
    assert reached and reached <= possible


def test_both_outcomes_of_an_attempt_occur_and_their_rate_matches_the_odds(applied):
    _, _, outcomes = applied
    attempts = outcomes.filter(pl.col("action").is_in(["retry", "rollback"]))
    assert {"recovered", "rolled_back", "still_failed"} <= set(attempts["status_after"])
    worked = attempts["status_after"].is_in(["recovered", "rolled_back"]).mean()
    assert worked == pytest.approx(attempts["success_probability"].mean(), abs=0.04)


def test_devices_without_a_decision_keep_their_status(applied):
    _, _, outcomes = applied
    untouched = outcomes.filter(pl.col("action").is_null())
    assert set(untouched["status_before"]) == {"success", "pending"}
    assert (untouched["status_after"] == untouched["status_before"]).all()


def test_a_halted_region_shows_held_devices():
    fleet = generate_fleet("af-south", 4_000, seed=7, as_of=AS_OF)
    policy = RecoveryPolicy(abort_failure_rate=0.1)  # the unbiased fleet fails ~20 %
    outcomes = simulate_outcomes(fleet, decide_recovery(fleet, policy, as_of=AS_OF), seed=7)
    after = status_summary(status_counts(outcomes))["after"]
    pending = int((fleet["update_status"] == "pending").sum())
    assert after["held"] >= pending
    assert "pending" not in after


def test_status_counts_before_match_the_fleet_and_both_phases_sum_to_it(applied):
    fleet, _, outcomes = applied
    summary = status_summary(status_counts(outcomes))
    assert summary["before"] == dict(fleet["update_status"].value_counts().iter_rows())
    assert sum(summary["before"].values()) == sum(summary["after"].values()) == fleet.height
    assert "partial" not in summary["after"] and "failed" not in summary["after"]


def probability(action: str, **telemetry) -> float:
    row = {"battery_pct": 80.0, "signal_dbm": -80, "commit_state": None} | telemetry
    frame = pl.DataFrame([row | {"action": action}], schema_overrides={"commit_state": pl.String})
    return frame.select(success_probability(OutcomeOdds()))[0, 0]


def test_odds_fall_with_a_weak_signal_for_a_retry_but_not_for_a_rollback():
    assert probability("retry", signal_dbm=-112) < 0.5 * probability("retry", signal_dbm=-80)
    assert probability("rollback", signal_dbm=-125) == probability("rollback", signal_dbm=-80)


def test_odds_fall_with_a_low_battery_for_both_attempts():
    for action in ("retry", "rollback"):
        assert probability(action, battery_pct=8.0) < 0.5 * probability(action, battery_pct=80.0)


def test_rolling_back_a_booted_image_is_riskier_than_dropping_a_written_one():
    written = probability("rollback", commit_state="written")
    booted = probability("rollback", commit_state="trial_boot")
    assert booted < written <= 1.0


@pytest.mark.parametrize("action", ["defer", "hold", "manual_triage"])
def test_waiting_actions_have_no_odds(action):
    assert probability(action) is None


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"status_after": "rolled_back"}, "outcome_follows_action"),  # a retry cannot roll back
        ({"success_probability": None}, "odds_only_for_attempts"),
    ],
)
def test_the_contract_rejects_an_impossible_outcome(applied, change, rule):
    _, _, outcomes = applied
    retry = pl.col("action") == "retry"
    broken = outcomes.with_columns(
        pl.when(retry).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
        for column, value in change.items()
    )
    report = check_contract(broken, OUTCOME_SCHEMA)
    assert not report.passed
    assert rule in set(report.failure_cases["check"])


@pytest.mark.parametrize(
    "bad", [{"retry": 1.2}, {"rollback_written": -0.1}, {"signal_softness_db": 0.0}]
)
def test_invalid_odds_are_rejected_by_name(bad):
    [name] = bad
    with pytest.raises(ValueError, match=name):
        OutcomeOdds(**bad)
