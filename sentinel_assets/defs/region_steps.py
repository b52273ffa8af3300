"""One step, one region or many: a fleet asset's body is written for one region and run for
every region partition its step targets.

A run of one partition (a schedule's region run, a UI materialization) behaves exactly as a
step written for one region: its outputs carry their metadata, its checks report as usual.
A run over a range of regions (`sentinel demo` refreshes the whole fleet in one run, which
saves every region's run start-up and most of its event-log writes) calls the body once per
region and then records, per region partition, what a one-region run would have recorded:
each shard's materialization with that region's metadata, and each check's evaluation for
that region's partition. A region whose blocking check fails still fails the step after
every shard is stored, so nothing downstream runs on it; `cli.orchestrate` then reruns the
regions one per run, so that failure cannot hide (or spread to) the other regions' results.
"""

import functools
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from sentinel_assets.defs.checks import ContractDue, contract, contracts_by_region

# What a step over several regions hands its IO manager, and gets from it: frame by region.
RegionFrames = dict[str, pl.DataFrame]
# What one region's body yields: its outputs, then its checks' results (contracts as due:
# a step over several regions validates them together).
RegionEvent = dg.Output | dg.AssetCheckResult | ContractDue


def is_region_range(context: dg.AssetExecutionContext | dg.InputContext) -> bool:
    """The step targets a range of region partitions: its values are `RegionFrames`."""
    if isinstance(context, dg.InputContext):
        return context.has_asset_partitions and not context.has_partition_key
    return not context.has_partition_key and context.has_partition_key_range


def _for_region(value: object, region: str) -> object:
    return value[region] if isinstance(value, dict) else value


def _step_signature(body: Callable[..., Any]) -> inspect.Signature:
    """The body's parameters with `region` replaced by the step's context, and its inputs
    untyped: a step over several regions receives `RegionFrames`, not one frame. Resources
    keep their types (Dagster finds them by type)."""
    params = list(inspect.signature(body).parameters.values())
    if not params or params[0].name != "region":
        raise TypeError(f"{body.__name__}: a region step's first parameter is `region`")
    context = inspect.Parameter(
        "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetExecutionContext
    )
    kept = [
        param
        if isinstance(param.annotation, type)
        and issubclass(param.annotation, dg.ConfigurableResource)
        else param.replace(annotation=inspect.Parameter.empty)
        for param in params[1:]
    ]
    return inspect.Signature([context, *kept])


def over_regions(body: Callable[..., Iterator[RegionEvent]]) -> Callable[..., Iterator[Any]]:
    """A Dagster step from a one-region body `body(region, **inputs_and_resources)`."""

    @functools.wraps(body)
    def step(context: dg.AssetExecutionContext, **kwargs: Any) -> Iterator[Any]:
        if not is_region_range(context):
            for event in body(context.partition_key, **kwargs):
                yield (
                    contract(event.frame, event.asset) if isinstance(event, ContractDue) else event
                )
            return
        outputs: dict[str, RegionFrames] = defaultdict(dict)
        due: dict[str, RegionFrames] = defaultdict(dict)
        checks: list[tuple[str, dg.AssetCheckResult]] = []
        for region in context.partition_keys:
            inputs = {name: _for_region(value, region) for name, value in kwargs.items()}
            for event in body(region, **inputs):
                if isinstance(event, ContractDue):
                    due[event.asset][region] = event.frame
                elif isinstance(event, dg.AssetCheckResult):
                    checks.append((region, event))
                else:
                    outputs[event.output_name][region] = event.value
                    key = context.assets_def.keys_by_output_name[event.output_name]
                    context.add_asset_metadata(event.metadata, asset_key=key, partition_key=region)
        for name, frames in outputs.items():
            yield dg.Output(frames, output_name=name)
        for asset, frames in due.items():
            checks.extend(contracts_by_region(asset, frames).items())
        yield from region_check_events(context, checks)

    step.__signature__ = _step_signature(body)  # type: ignore[attr-defined]
    return step


def _latest_materializations(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, regions: list[str]
) -> Mapping[str, AssetCheckEvaluationTargetMaterializationData]:
    """The materialization each region's check evaluated, one query per asset (the shards
    were stored before any check result is recorded)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=regions), limit=len(regions)
    ).records
    latest: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:
        partition = record.partition_key
        if partition is not None and partition not in latest:
            latest[partition] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
            )
    return latest


def region_check_events(
    context: dg.AssetExecutionContext, checks: list[tuple[str, dg.AssetCheckResult]]
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """Each check's output once (what downstream steps wait on), then its evaluation per
    region partition; a failed blocking evaluation fails the step, as in a one-region run."""
    assets_def = context.assets_def
    by_key: dict[dg.AssetCheckKey, list[tuple[str, dg.AssetCheckResult]]] = defaultdict(list)
    for region, result in checks:
        by_key[
            dg.AssetCheckKey(dg.AssetKey.from_coercible(result.asset_key), result.check_name)
        ].append((region, result))
    targets = {
        asset_key: _latest_materializations(context, asset_key, list(context.partition_keys))
        for asset_key in {key.asset_key for key in by_key}
    }
    for key, results in by_key.items():
        yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(key))
        spec = assets_def.get_spec_for_check_key(key)
        for region, result in results:
            yield dg.AssetCheckEvaluation(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=result.passed,
                metadata=result.metadata,
                target_materialization_data=targets[key.asset_key].get(region),
                severity=result.severity,
                description=result.description,
                blocking=spec.blocking,
                partition=region if spec.partitions_def is not None else None,
            )
