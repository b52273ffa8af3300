"""The data-quality rules, each seen holding on pipeline output and failing on data that
breaks it, with the counts and example record ids an operator reads."""

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_assets import quality
from sentinel_assets.chaos import inject_faults
from sentinel_assets.contracts import FAULT_KINDS
from sentinel_assets.outcomes import simulate_outcomes
from sentinel_assets.recovery import RecoveryPolicy, campaign_health, decide_recovery
from sentinel_assets.sanitize import split_fleet
from sentinel_assets.warehouse import create_macros
from sentinel_assets_tests.conftest import AS_OF

RATES = dict.fromkeys(FAULT_KINDS, 0.05)
HALTING = RecoveryPolicy(abort_failure_rate=0.05, abort_min_attempted=10)


@pytest.fixture(scope="module")
def stages(fleet):
    corrupted, ledger = inject_faults(fleet, RATES, seed=1)
    sanitized, quarantine = split_fleet(corrupted)
    return corrupted, ledger, sanitized, quarantine


def test_records_conserved_holds_on_the_sanitizers_split(stages):
    corrupted, _, sanitized, quarantine = stages
    verdict = quality.records_conserved(corrupted, sanitized, quarantine)
    assert verdict.passed
    assert verdict.counts["sanitized_records"] + verdict.counts["quarantined_records"] == (
        corrupted.height
    )
    assert verdict.examples == ()


def test_a_record_lost_between_the_two_outputs_fails_conservation(stages):
    corrupted, _, sanitized, quarantine = stages
    lost_id = sanitized["record_id"][0]
    verdict = quality.records_conserved(corrupted, sanitized.slice(1), quarantine)
    assert not verdict.passed
    assert verdict.counts["lost"] == 1
    assert verdict.examples == (lost_id,)
    assert verdict.failing_rows == 1


def test_a_record_in_both_outputs_fails_conservation(stages):
    corrupted, _, sanitized, quarantine = stages
    both_id = quarantine["record_id"][0]
    doubled = pl.concat([sanitized, sanitized.head(1).with_columns(record_id=pl.lit(both_id))])
    verdict = quality.records_conserved(corrupted, doubled, quarantine)
    assert not verdict.passed
    assert verdict.counts["in_both"] == 1
    assert both_id in verdict.examples


def test_a_record_that_was_never_in_the_input_fails_conservation(stages):
    corrupted, _, sanitized, quarantine = stages
    invented = sanitized.head(1).with_columns(record_id=pl.lit(corrupted["record_id"].max() + 1))
    verdict = quality.records_conserved(corrupted, pl.concat([sanitized, invented]), quarantine)
    assert not verdict.passed
    assert verdict.counts["invented"] == 1


def test_every_injected_fault_is_contained(stages):
    _, ledger, _, quarantine = stages
    assert quality.faults_contained(quarantine, ledger).passed


def test_a_fault_that_escaped_quarantine_fails_containment(stages):
    _, ledger, _, quarantine = stages
    escaped = ledger["record_id"][0]
    leaky = quarantine.filter(pl.col("record_id") != escaped)
    verdict = quality.faults_contained(leaky, ledger)
    assert not verdict.passed
    assert verdict.counts["escaped"] == 1
    assert verdict.examples == (escaped,)
    assert verdict.failing_rows == 1


@pytest.mark.parametrize(
    ("quarantined", "trusted", "limit", "passes"),
    [(20, 80, 0.2, True), (21, 79, 0.2, False), (0, 0, 0.0, True), (1, 0, 0.99, False)],
)
def test_the_quarantine_gate_fails_only_above_its_limit(quarantined, trusted, limit, passes):
    frame = pl.DataFrame({"record_id": range(quarantined + trusted)})
    verdict = quality.quarantine_rate_within_gate(
        frame.slice(quarantined), frame.head(quarantined), limit
    )
    assert verdict.passed is passes
    assert verdict.counts["max_quarantine_rate"] == limit
    # A failed gate counts the quarantined records; the alert's sentence names rate and limit.
    assert verdict.failing_rows == (0 if passes else quarantined)
    assert f"max_quarantine_rate {limit}" in verdict.summary()
    assert ("holds" in verdict.summary()) is passes


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(
        st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), min_size=1, max_size=50
    )
)
def test_the_sql_macro_and_python_agree_on_the_quarantine_rate(counts):
    with duckdb.connect() as conn:
        create_macros(conn)
        conn.execute("CREATE TABLE shards (quarantined BIGINT, trusted BIGINT)")
        conn.executemany("INSERT INTO shards VALUES (?, ?)", counts)
        in_sql = conn.execute(
            "SELECT quarantine_rate(quarantined, trusted) FROM shards ORDER BY rowid"
        ).fetchall()
    assert [rate for (rate,) in in_sql] == pytest.approx(
        [quality.quarantine_rate(q, t) for q, t in counts]
    )


def _decided(sanitized: pl.DataFrame, policy: RecoveryPolicy):
    campaign = campaign_health(sanitized, policy)
    return decide_recovery(sanitized, policy, as_of=AS_OF, campaign=campaign), campaign


def test_a_halted_campaign_holds_every_pending_update(stages):
    sanitized = stages[2]
    decisions, campaign = _decided(sanitized, HALTING)
    assert campaign["halted"].all()
    verdict = quality.halt_holds_pending_updates(decisions, campaign, sanitized)
    assert verdict.passed
    assert verdict.counts["held_pending"] == verdict.counts["pending"] > 0


def test_a_pending_update_left_unheld_in_a_halted_region_fails(stages):
    sanitized = stages[2]
    decisions, campaign = _decided(sanitized, HALTING)
    unheld = decisions.filter(pl.col("update_status") == "pending")["record_id"][0]
    verdict = quality.halt_holds_pending_updates(
        decisions.filter(pl.col("record_id") != unheld), campaign, sanitized
    )
    assert not verdict.passed
    assert verdict.examples == (unheld,)


def test_a_running_campaign_that_holds_an_update_fails(stages):
    sanitized = stages[2]
    decisions, campaign = _decided(sanitized, RecoveryPolicy())
    assert not campaign["halted"].any()
    assert quality.halt_holds_pending_updates(decisions, campaign, sanitized).passed
    held = decisions.with_columns(
        action=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("hold")).otherwise("action")
    )
    verdict = quality.halt_holds_pending_updates(held, campaign, sanitized)
    assert not verdict.passed
    assert verdict.counts["held"] == 1


@pytest.fixture(scope="module")
def outcomes(stages):
    sanitized = stages[2]
    decisions, _ = _decided(sanitized, RecoveryPolicy())
    return sanitized, simulate_outcomes(sanitized, decisions, seed=7)


def test_outcomes_cover_the_fleet_once_each(outcomes):
    sanitized, result = outcomes
    verdict = quality.outcomes_cover_the_fleet(result, sanitized)
    assert verdict.passed
    assert verdict.counts["outcomes"] == verdict.counts["devices"] == sanitized.height


@pytest.mark.parametrize(
    ("break_it", "count"),
    [
        (lambda r: r.slice(1), "without_outcome"),
        (lambda r: pl.concat([r, r.head(1)]), "duplicated"),
    ],
)
def test_outcomes_that_miss_or_repeat_a_device_fail(outcomes, break_it, count):
    sanitized, result = outcomes
    verdict = quality.outcomes_cover_the_fleet(break_it(result), sanitized)
    assert not verdict.passed
    assert verdict.counts[count] >= 1


def test_an_outcome_whose_status_before_changed_fails(outcomes):
    sanitized, result = outcomes
    first = result.filter(pl.col("status_before") != "success")["record_id"][0]
    changed = result.with_columns(
        status_before=pl.when(pl.col("record_id") == first)
        .then(pl.lit("success"))
        .otherwise(pl.col("status_before"))
    )
    verdict = quality.outcomes_cover_the_fleet(changed, sanitized)
    assert not verdict.passed
    assert verdict.counts["status_before_changed"] == 1
    assert verdict.examples == (first,)
