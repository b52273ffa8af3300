"""Data-quality rules beyond the row contracts: conservation, containment and the gates a
shard must pass before anything downstream trusts it.

Each rule is a plain function over frames that returns a `Verdict`: whether it holds, the
counts that show it, and a few example record ids where it does not. The Dagster layer only
reports verdicts as asset checks (`defs/checks.py`); the rule's name and docstring are the
check's name and description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from sentinel_assets.contracts import RECORD_ID

EXAMPLES = 10


@dataclass(frozen=True)
class Verdict:
    """Whether a rule holds, the numbers that show it, and example record ids that break it."""

    passed: bool
    counts: Mapping[str, int | float | bool] = field(default_factory=dict)
    examples: tuple[int, ...] = ()
    failing_rows: int = 0

    def summary(self) -> str:
        """What an alert says: every measured number and how many rows break the rule."""
        measured = ", ".join(f"{name} {_number(value)}" for name, value in self.counts.items())
        verdict = "holds" if self.passed else f"fails for {self.failing_rows:,} rows"
        return f"The rule {verdict}: {measured}."


def _number(value: int | float | bool) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


class QualityGates(BaseModel):
    """Dataset-level limits beyond the row contracts; breaking one fails a blocking check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_quarantine_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A shard with a larger share of records quarantined is not trusted.",
    )


def quarantine_rate(quarantined: int, trusted: int) -> float:
    """Share of a shard's records held for triage; 0 for an empty shard."""
    total = quarantined + trusted
    return quarantined / total if total else 0.0


# The same formula for the catalog's SQL (a DuckDB macro; `warehouse.create_macros`).
QUARANTINE_RATE_MACRO = (
    "quarantine_rate(quarantined, trusted) AS "
    "coalesce(quarantined / nullif(quarantined + trusted, 0), 0.0)"
)


def _examples(ids: pl.Series) -> tuple[int, ...]:
    return tuple(ids.head(EXAMPLES).to_list())


def records_conserved(
    corrupted_fleet: pl.DataFrame, sanitized_fleet: pl.DataFrame, quarantine: pl.DataFrame
) -> Verdict:
    """Every corrupted record is in exactly one of sanitized_fleet and quarantine."""
    sanitized_ids, quarantined_ids = sanitized_fleet[RECORD_ID], quarantine[RECORD_ID]
    in_both = sanitized_ids.filter(sanitized_ids.is_in(quarantined_ids.implode()))
    split = pl.concat([sanitized_ids, quarantined_ids])
    corrupted_ids = corrupted_fleet[RECORD_ID]
    lost = corrupted_ids.filter(~corrupted_ids.is_in(split.implode()))
    invented = split.filter(~split.is_in(corrupted_ids.implode()))
    passed = (
        in_both.len() == 0
        and lost.len() == 0
        and invented.len() == 0
        and split.len() == corrupted_fleet.height
    )
    return Verdict(
        passed,
        {
            "corrupted_records": corrupted_fleet.height,
            "sanitized_records": sanitized_ids.len(),
            "quarantined_records": quarantined_ids.len(),
            "in_both": in_both.len(),
            "lost": lost.len(),
            "invented": invented.len(),
        },
        _examples(pl.concat([in_both, lost, invented])),
        in_both.len() + lost.len() + invented.len(),
    )


def quarantine_rate_within_gate(
    sanitized_fleet: pl.DataFrame, quarantine: pl.DataFrame, max_quarantine_rate: float
) -> Verdict:
    """A shard with too many quarantined records is not trusted downstream."""
    rate = quarantine_rate(quarantine.height, sanitized_fleet.height)
    passed = rate <= max_quarantine_rate
    return Verdict(
        passed,
        {
            "quarantine_rate": round(rate, 4),
            "max_quarantine_rate": max_quarantine_rate,
            "quarantined_records": quarantine.height,
            "trusted_records": sanitized_fleet.height,
        },
        failing_rows=0 if passed else quarantine.height,
    )


def faults_contained(quarantine: pl.DataFrame, chaos_ledger: pl.DataFrame) -> Verdict:
    """Every record the chaos injector corrupted ended up in quarantine."""
    faulty = chaos_ledger[RECORD_ID].unique().sort()
    escaped = faulty.filter(~faulty.is_in(quarantine[RECORD_ID].implode()))
    return Verdict(
        escaped.len() == 0,
        {"corrupted_records": faulty.len(), "escaped": escaped.len()},
        _examples(escaped),
        escaped.len(),
    )


def halt_holds_pending_updates(
    recovery_decisions: pl.DataFrame, campaign_status: pl.DataFrame, sanitized_fleet: pl.DataFrame
) -> Verdict:
    """A halted campaign holds every pending update; a running one holds none."""
    halted = bool(campaign_status["halted"].any())
    pending = sanitized_fleet.filter(pl.col("update_status") == "pending")[RECORD_ID]
    held = recovery_decisions.filter(pl.col("action") == "hold")
    held_pending = held.filter(pl.col("update_status") == "pending")[RECORD_ID]
    # Halted: a pending update left unheld is wrong. Running: anything held is wrong.
    wrong = pending.filter(~pending.is_in(held_pending.implode())) if halted else held[RECORD_ID]
    return Verdict(
        wrong.len() == 0,
        {
            "halted": halted,
            "pending": pending.len(),
            "held": held.height,
            "held_pending": held_pending.len(),
        },
        _examples(wrong),
        wrong.len(),
    )


def outcomes_cover_the_fleet(
    recovery_outcomes: pl.DataFrame, sanitized_fleet: pl.DataFrame
) -> Verdict:
    """Every sanitized device has exactly one outcome, with its status before as it was."""
    expected = sanitized_fleet.select(RECORD_ID, status_before="update_status")
    matched = recovery_outcomes.select(RECORD_ID, "status_before").join(
        expected, on=RECORD_ID, how="full", suffix="_fleet", coalesce=True
    )
    without_outcome = matched.filter(pl.col("status_before").is_null())[RECORD_ID]
    not_in_fleet = matched.filter(pl.col("status_before_fleet").is_null())[RECORD_ID]
    changed = matched.filter(pl.col("status_before") != pl.col("status_before_fleet"))[RECORD_ID]
    duplicated = recovery_outcomes.height - recovery_outcomes[RECORD_ID].n_unique()
    wrong = pl.concat([without_outcome, not_in_fleet, changed])
    return Verdict(
        wrong.len() == 0 and duplicated == 0,
        {
            "devices": sanitized_fleet.height,
            "outcomes": recovery_outcomes.height,
            "without_outcome": without_outcome.len(),
            "not_in_fleet": not_in_fleet.len(),
            "status_before_changed": changed.len(),
            "duplicated": duplicated,
        },
        _examples(wrong),
        wrong.len() + duplicated,
    )
