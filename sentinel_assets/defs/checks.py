"""Asset checks: each asset's Pandera contract, plus conservation and containment.

All are blocking: a failure stops the assets downstream of it in the same run, and the
alert sensor raises it.
"""

import dagster as dg
import polars as pl

from sentinel_assets.contracts import ASSET_CONTRACTS, check_contract
from sentinel_assets.defs.assets import markdown
from sentinel_assets.defs.partitions import region_partitions
from sentinel_assets.defs.resources import SentinelSettings, WarehouseCatalog

RECORD_IDS = {"columns": ["record_id"]}


def contract_result(frame: pl.DataFrame, asset: str) -> dg.AssetCheckResult:
    report = check_contract(frame, ASSET_CONTRACTS[asset])
    metadata: dict[str, object] = {
        "rows": report.rows,
        "failing_rows": report.failing_rows,
    }
    if not report.passed:
        metadata["failures_by_check"] = markdown(report.failures_by_check(), rows=20)
        metadata["examples"] = markdown(report.failure_cases, rows=10)
    return dg.AssetCheckResult(passed=report.passed, metadata=metadata)


def region_contract_check(asset: str) -> dg.AssetChecksDefinition:
    """A blocking, per-region check of an asset against its contract in `contracts`."""

    @dg.asset_check(
        asset=asset,
        name="contract",
        blocking=True,
        partitions_def=region_partitions,
        description=f"Every row of {asset} satisfies its Pandera contract "
        "(columns, strict types, bounds, allowed values, uniqueness).",
    )
    def _check(frame: pl.DataFrame) -> dg.AssetCheckResult:
        return contract_result(frame, asset)

    return _check


contract_checks = [
    region_contract_check(asset)
    for asset in (
        "raw_fleet",
        "corrupted_fleet",
        "chaos_ledger",
        "sanitized_fleet",
        "quarantine",
        "recovery_decisions",
    )
]


@dg.asset_check(
    asset="sanitized_fleet",
    blocking=True,
    partitions_def=region_partitions,
    additional_ins={
        "corrupted_fleet": dg.AssetIn(metadata=RECORD_IDS),
        "quarantine": dg.AssetIn(metadata=RECORD_IDS),
    },
)
def records_conserved(
    sanitized_fleet: pl.DataFrame, corrupted_fleet: pl.DataFrame, quarantine: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every corrupted record is in exactly one of sanitized_fleet and quarantine."""
    sanitized_ids, quarantined_ids = sanitized_fleet["record_id"], quarantine["record_id"]
    in_both = sanitized_ids.filter(sanitized_ids.is_in(quarantined_ids.implode()))
    split = pl.concat([sanitized_ids, quarantined_ids])
    lost = corrupted_fleet["record_id"].filter(~corrupted_fleet["record_id"].is_in(split.implode()))
    passed = in_both.len() == 0 and lost.len() == 0 and split.len() == corrupted_fleet.height
    return dg.AssetCheckResult(
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


@dg.asset_check(
    asset="sanitized_fleet",
    blocking=True,
    partitions_def=region_partitions,
    additional_ins={"quarantine": dg.AssetIn(metadata=RECORD_IDS)},
)
def quarantine_rate_within_gate(
    sanitized_fleet: pl.DataFrame, quarantine: pl.DataFrame, settings: SentinelSettings
) -> dg.AssetCheckResult:
    """A shard with too many quarantined records is not trusted downstream."""
    total = sanitized_fleet.height + quarantine.height
    rate = quarantine.height / total if total else 0.0
    gate = settings.gates.max_quarantine_rate
    return dg.AssetCheckResult(
        passed=rate <= gate,
        metadata={"quarantine_rate": round(rate, 4), "max_quarantine_rate": gate},
    )


@dg.asset_check(
    asset="quarantine",
    blocking=True,
    partitions_def=region_partitions,
    additional_ins={"chaos_ledger": dg.AssetIn(metadata=RECORD_IDS)},
)
def faults_contained(quarantine: pl.DataFrame, chaos_ledger: pl.DataFrame) -> dg.AssetCheckResult:
    """Every record the chaos injector corrupted ended up in quarantine."""
    faulty = chaos_ledger["record_id"].unique()
    escaped = faulty.filter(~faulty.is_in(quarantine["record_id"].implode()))
    return dg.AssetCheckResult(
        passed=escaped.len() == 0,
        metadata={
            "corrupted_records": faulty.len(),
            "escaped": escaped.len(),
            "example_ids": dg.MetadataValue.json(escaped.head(10).to_list()),
        },
    )


@dg.asset_check(asset="regional_rank", name="contract", blocking=True)
def regional_rank_contract(catalog: WarehouseCatalog) -> dg.AssetCheckResult:
    """The regional report satisfies its contract."""
    with catalog.get_connection() as conn:
        frame = conn.sql("SELECT * FROM regional_rank").pl()
    return contract_result(frame, "regional_rank")


# --- Recovery outcomes and analyst reports -------------------------------------------------

outcome_contract_checks = [
    region_contract_check(asset) for asset in ("campaign_status", "recovery_outcomes")
]


@dg.asset_check(
    asset="recovery_outcomes",
    blocking=True,
    partitions_def=region_partitions,
    additional_ins={"sanitized_fleet": dg.AssetIn(metadata={"columns": ["update_status"]})},
)
def outcomes_cover_the_fleet(
    recovery_outcomes: pl.DataFrame, sanitized_fleet: pl.DataFrame
) -> dg.AssetCheckResult:
    """Every sanitized device has exactly one outcome, and the before-counts are the fleet's."""
    before = recovery_outcomes["status_before"].value_counts().sort("status_before")
    fleet = sanitized_fleet["update_status"].value_counts().sort("update_status")
    same_counts = before.rows() == fleet.rows()
    return dg.AssetCheckResult(
        passed=recovery_outcomes.height == sanitized_fleet.height and same_counts,
        metadata={
            "devices": sanitized_fleet.height,
            "outcomes": recovery_outcomes.height,
            "status_counts_match": same_counts,
        },
    )


@dg.asset_check(
    asset="campaign_status",
    blocking=True,
    partitions_def=region_partitions,
    additional_ins={
        "sanitized_fleet": dg.AssetIn(metadata={"columns": ["update_status"]}),
        "recovery_decisions": dg.AssetIn(metadata={"columns": ["update_status", "action"]}),
    },
)
def halt_holds_pending_updates(
    campaign_status: pl.DataFrame, sanitized_fleet: pl.DataFrame, recovery_decisions: pl.DataFrame
) -> dg.AssetCheckResult:
    """A halted campaign holds every pending update; a running one holds none."""
    halted = bool(campaign_status["halted"].any())
    pending = int((sanitized_fleet["update_status"] == "pending").sum())
    held_pending = recovery_decisions.filter(
        (pl.col("update_status") == "pending") & (pl.col("action") == "hold")
    ).height
    held = int((recovery_decisions["action"] == "hold").sum())
    passed = held_pending == pending if halted else held == 0
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"halted": halted, "pending": pending, "held": held, "held_pending": held_pending},
    )


def report_contract_check(asset: str) -> dg.AssetChecksDefinition:
    """A blocking check of a report table in the DuckDB catalog against its contract."""

    @dg.asset_check(
        asset=asset,
        name="contract",
        blocking=True,
        description=f"Every row of the {asset} report satisfies its Pandera contract.",
    )
    def _check(catalog: WarehouseCatalog) -> dg.AssetCheckResult:
        with catalog.get_connection() as conn:
            frame = conn.table(asset).pl()
        return contract_result(frame, asset)

    return _check


report_contract_checks = [
    report_contract_check(asset)
    for asset in (
        "failure_clusters",
        "failure_telemetry",
        "triage_queue",
        "campaign_report",
        "status_before_after",
    )
]
