"""Asset checks: each asset's Pandera contract, plus the data-quality rules of `quality`.

Every check runs inside the step that produced its asset (`check_specs`), on the frame still
in memory: no step of its own, no second read of the shard. All are blocking: a failed check
fails that step after its outputs are stored, so the shard can be inspected but nothing
downstream of it runs, and the alert sensor raises it. The rules themselves are domain code
(`sentinel_assets.quality`, `validation`); this module only declares them (a spec named and
described by the rule) and reports their verdicts as check results.
"""

import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ParamSpec

import dagster as dg
import polars as pl

from sentinel_assets.contracts import ASSET_CONTRACTS
from sentinel_assets.defs.metadata import markdown
from sentinel_assets.defs.partitions import region_partitions
from sentinel_assets.quality import Verdict
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
    asset: str, rule: Callable[..., Verdict], additional_deps: Sequence[str] = ()
) -> dg.AssetCheckSpec:
    """A blocking, per-region check named and described by the quality rule it reports."""
    return dg.AssetCheckSpec(
        rule.__name__,
        asset=asset,
        blocking=True,
        partitions_def=region_partitions,
        description=inspect.getdoc(rule),
        additional_deps=list(additional_deps),
    )


def verdict(
    asset: str, rule: Callable[P, Verdict], *args: P.args, **kwargs: P.kwargs
) -> dg.AssetCheckResult:
    """Evaluate a quality rule and report its verdict as the result of the check it names."""
    started = time.perf_counter()
    outcome = rule(*args, **kwargs)
    seconds = time.perf_counter() - started
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=rule.__name__,
        passed=outcome.passed,
        description=None if outcome.passed else outcome.summary(),
        metadata={
            **outcome.counts,
            "failing_rows": outcome.failing_rows,
            "example_ids": dg.MetadataValue.json(list(outcome.examples)),
            "check_seconds": dg.MetadataValue.float(round(seconds, 4)),
        },
    )


@dataclass(frozen=True)
class ContractDue:
    """A region's frame to check against its asset's contract once the step has every
    region's frame (`contracts_by_region`): Pandera's cost is mostly per call, not per row."""

    frame: pl.DataFrame
    asset: str


def contracts_by_region(
    asset: str, frames: Mapping[str, pl.DataFrame]
) -> dict[str, dg.AssetCheckResult]:
    """Each region's contract result, from one validation of all regions' rows when they all
    pass (the usual case), else from each region's own validation, so a region's result
    (and its failure cases) is exactly what a one-region run reports."""
    started = time.perf_counter()
    try:
        whole = pl.concat(list(frames.values()), how="vertical")
    except pl.exceptions.PolarsError:
        whole = None  # shapes differ: the regions' own validations say how
    if whole is None or not check_contract(whole, ASSET_CONTRACTS[asset]).passed:
        return {region: contract(frame, asset) for region, frame in frames.items()}
    seconds = time.perf_counter() - started
    total = max(1, whole.height)
    return {
        region: dg.AssetCheckResult(
            asset_key=asset,
            check_name=CONTRACT,
            passed=True,
            metadata={
                "rows": frame.height,
                "failing_rows": 0,
                # the regions were validated together: each carries its share of the time
                "check_seconds": dg.MetadataValue.float(round(seconds * frame.height / total, 4)),
                "validated_with_regions": len(frames),
            },
        )
        for region, frame in frames.items()
    }


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
        asset_key=asset,
        check_name=CONTRACT,
        passed=report.passed,
        description=None
        if report.passed
        else f"{report.failing_rows:,} of {report.rows:,} rows break the {asset} contract.",
        metadata=metadata,
    )
