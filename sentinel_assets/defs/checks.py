"""Asset checks: each asset's Pandera contract, plus conservation and containment.

Every check runs inside the step that produced its asset (`check_specs`), on the frame still
in memory: no step of its own, no second read of the shard. All are blocking: a failed check
fails that step after its outputs are stored, so the shard can be inspected but nothing
downstream of it runs, and the alert sensor raises it. Each check below is a spec (what the
UI lists) and a function that evaluates it; the function's name and docstring are the check's.
"""

import functools
import inspect
import time
from collections.abc import Callable, Sequence
from typing import ParamSpec

import dagster as dg
import polars as pl

from sentinel_assets.contracts import ASSET_CONTRACTS
from sentinel_assets.defs.metadata import markdown
from sentinel_assets.defs.partitions import region_partitions
from sentinel_assets.validation import check_contract

CONTRACT = "contract"
P = ParamSpec("P")


def timed(check: Callable[P, dg.AssetCheckResult]) -> Callable[P, dg.AssetCheckResult]:
    """Records a check's own seconds in its result: with no step of its own, that is where
    its cost shows (in the UI and in `make bench`)."""

    @functools.wraps(check)
    def evaluate(*args: P.args, **kwargs: P.kwargs) -> dg.AssetCheckResult:
        started = time.perf_counter()
        result = check(*args, **kwargs)
        seconds = dg.MetadataValue.float(round(time.perf_counter() - started, 4))
        return result._replace(metadata={**result.metadata, "check_seconds": seconds})

    return evaluate


def contract_spec(asset: str, *, partitioned: bool = True) -> dg.AssetCheckSpec:
    """A blocking check of an asset against its contract in `contracts`."""
    return dg.AssetCheckSpec(
        CONTRACT,
        asset=asset,
        blocking=True,
        partitions_def=region_partitions if partitioned else None,
        description=f"Every row of {asset} satisfies its Pandera contract "
        "(columns, strict types, bounds, allowed values, uniqueness).",
    )


def region_spec(
    asset: str, check: Callable[..., dg.AssetCheckResult], additional_deps: Sequence[str] = ()
) -> dg.AssetCheckSpec:
    """A blocking, per-region check named and described by the function that evaluates it."""
    return dg.AssetCheckSpec(
        check.__name__,
        asset=asset,
        blocking=True,
        partitions_def=region_partitions,
        description=inspect.getdoc(check),
        additional_deps=list(additional_deps),
    )


@timed
def contract(frame: pl.DataFrame, asset: str) -> dg.AssetCheckResult:
    report = check_contract(frame, ASSET_CONTRACTS[asset])
    metadata: dict[str, object] = {
        "rows": report.rows,
        "failing_rows": report.failing_rows,
    }
    if not report.passed:
        metadata["failures_by_check"] = markdown(report.failures_by_check(), rows=20)
        metadata["examples"] = markdown(report.failure_cases, rows=10)
    return dg.AssetCheckResult(
        asset_key=asset, check_name=CONTRACT, passed=report.passed, metadata=metadata
    )


@timed
def records_conserved(
    corrupted_fleet: pl.DataFrame, sanitized_fleet: pl.DataFrame, quarantine: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every corrupted record is in exactly one of sanitized_fleet and quarantine."""
    sanitized_ids, quarantined_ids = sanitized_fleet["record_id"], quarantine["record_id"]
    in_both = sanitized_ids.filter(sanitized_ids.is_in(quarantined_ids.implode()))
    split = pl.concat([sanitized_ids, quarantined_ids])
    lost = corrupted_fleet["record_id"].filter(~corrupted_fleet["record_id"].is_in(split.implode()))
    passed = in_both.len() == 0 and lost.len() == 0 and split.len() == corrupted_fleet.height
    return dg.AssetCheckResult(
        asset_key="sanitized_fleet",
        check_name="records_conserved",
        passed=passed,
        metadata={
            "corrupted_records": corrupted_fleet.height,
            "sanitized_records": sanitized_ids.len(),
            "quarantined_records": quarantined_ids.len(),
            "in_both": in_both.len(),
            "lost": lost.len(),
            "example_ids": dg.MetadataValue.json(pl.concat([in_both, lost]).head(10).to_list()),
        },
    )


@timed
def quarantine_rate_within_gate(
    sanitized_fleet: pl.DataFrame, quarantine: pl.DataFrame, max_quarantine_rate: float
) -> dg.AssetCheckResult:
    """A shard with too many quarantined records is not trusted downstream."""
    total = sanitized_fleet.height + quarantine.height
    rate = quarantine.height / total if total else 0.0
    return dg.AssetCheckResult(
        asset_key="sanitized_fleet",
        check_name="quarantine_rate_within_gate",
        passed=rate <= max_quarantine_rate,
        metadata={"quarantine_rate": round(rate, 4), "max_quarantine_rate": max_quarantine_rate},
    )


@timed
def faults_contained(quarantine: pl.DataFrame, chaos_ledger: pl.DataFrame) -> dg.AssetCheckResult:
    """Every record the chaos injector corrupted ended up in quarantine."""
    faulty = chaos_ledger["record_id"].unique()
    escaped = faulty.filter(~faulty.is_in(quarantine["record_id"].implode()))
    return dg.AssetCheckResult(
        asset_key="quarantine",
        check_name="faults_contained",
        passed=escaped.len() == 0,
        metadata={
            "corrupted_records": faulty.len(),
            "escaped": escaped.len(),
            "example_ids": dg.MetadataValue.json(escaped.head(10).to_list()),
        },
    )


@timed
def halt_holds_pending_updates(
    recovery_decisions: pl.DataFrame, campaign: pl.DataFrame, sanitized_fleet: pl.DataFrame
) -> dg.AssetCheckResult:
    """A halted campaign holds every pending update; a running one holds none."""
    halted = bool(campaign["halted"].any())
    pending = int((sanitized_fleet["update_status"] == "pending").sum())
    held_pending = recovery_decisions.filter(
        (pl.col("update_status") == "pending") & (pl.col("action") == "hold")
    ).height
    held = int((recovery_decisions["action"] == "hold").sum())
    return dg.AssetCheckResult(
        asset_key="recovery_decisions",
        check_name="halt_holds_pending_updates",
        passed=held_pending == pending if halted else held == 0,
        metadata={"halted": halted, "pending": pending, "held": held, "held_pending": held_pending},
    )


@timed
def outcomes_cover_the_fleet(
    recovery_outcomes: pl.DataFrame, sanitized_fleet: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every sanitized device has exactly one outcome, and the before-counts are the fleet's."""
    before = recovery_outcomes["status_before"].value_counts().sort("status_before")
    fleet = sanitized_fleet["update_status"].value_counts().sort("update_status")
    same_counts = before.rows() == fleet.rows()
    return dg.AssetCheckResult(
        asset_key="recovery_outcomes",
        check_name="outcomes_cover_the_fleet",
        passed=recovery_outcomes.height == sanitized_fleet.height and same_counts,
        metadata={
            "devices": sanitized_fleet.height,
            "outcomes": recovery_outcomes.height,
            "status_counts_match": same_counts,
        },
    )
