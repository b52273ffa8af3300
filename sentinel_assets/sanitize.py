"""Sanitizer: splits a corrupted fleet into records we can trust and a manual-triage queue.

The rules are the fleet contract's own (`validation.row_rules`), evaluated as vectorized
expressions; a record breaking any of them goes to quarantine with its original values and
one reason code (`column:rule`) per broken rule. Nothing is dropped and nothing halts.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from sentinel_assets.contracts import (
    FLEET_COLUMNS,
    FLEET_DTYPES,
    PARTITION_KEY,
    QUARANTINE_SCHEMA,
    TEXT_ENCODED_COLUMNS,
)
from sentinel_assets.validation import RowRule, row_rules

UNPARSABLE = "not_a_number"
WRONG_PARTITION = "wrong_partition"


class SplitFleet(NamedTuple):
    sanitized: pl.DataFrame
    quarantine: pl.DataFrame


def sanitizer_rules() -> list[RowRule]:
    """The contract's rules as seen on text-encoded input, plus the partition's own rule: a
    record's region is the region of the shard it came in.

    Evaluated on the *parsed* frame, except that an unparsable reading is reported once, as
    `not_a_number`, and not also as `missing`.
    """
    parse_failed = {c: pl.col(f"__unparsable_{c}") for c in TEXT_ENCODED_COLUMNS}
    rules = []
    for rule in row_rules():
        if rule.rule == "missing" and rule.column in parse_failed:
            rule = RowRule(rule.column, rule.rule, rule.violated & ~parse_failed[rule.column])
        rules.append(rule)
        if rule.rule == "missing" and rule.column in parse_failed:
            rules.append(RowRule(rule.column, UNPARSABLE, parse_failed[rule.column]))
    rules.append(
        RowRule(
            "region", WRONG_PARTITION, (pl.col("region") != pl.col(PARTITION_KEY)).fill_null(False)
        )
    )
    return rules


def _require_columns(corrupted: pl.DataFrame) -> None:
    missing = [c for c in FLEET_COLUMNS if c not in corrupted.columns]
    if missing:
        raise ValueError(f"corrupted fleet is missing contract columns: {', '.join(missing)}")


def _reason_lists(flags: pl.DataFrame, rules: list[RowRule]) -> pl.DataFrame:
    """Per flagged row, the codes of the rules it broke, in rule order.

    Only the few broken cells are touched (long format, then one list per row), instead of a
    list built from every rule for every row.
    """
    order = {rule.code: i for i, rule in enumerate(rules)}
    return (
        flags.with_row_index("__row")
        .unpivot(index="__row", variable_name="reason", value_name="__hit")
        .filter(pl.col("__hit"))
        .with_columns(
            pl.col("reason").replace_strict(order, return_dtype=pl.Int64).alias("__order")
        )
        .sort("__row", "__order")
        .group_by("__row", maintain_order=True)
        .agg(pl.col("reason").alias("reasons"))
        .select("reasons")
    )


def split_fleet(corrupted: pl.DataFrame) -> SplitFleet:
    """Every input record ends up in exactly one of the two frames."""
    _require_columns(corrupted)
    if not corrupted["record_id"].is_sorted():
        corrupted = corrupted.sort("record_id")  # first occurrence of a device id wins
    else:  # let the uniqueness rule use the order it was just shown to have
        corrupted = corrupted.with_columns(pl.col("record_id").set_sorted())
    rules = sanitizer_rules()
    # Each reading is parsed once; a reading that was text but did not parse is unparsable.
    parsed = corrupted.select(FLEET_COLUMNS).with_columns(
        pl.col(c).cast(FLEET_DTYPES[c], strict=False) for c in TEXT_ENCODED_COLUMNS
    )
    parsed = parsed.with_columns(
        (corrupted[c].is_not_null() & parsed[c].is_null()).alias(f"__unparsable_{c}")
        for c in TEXT_ENCODED_COLUMNS
    )
    flags = parsed.select(rule.violated.alias(rule.code) for rule in rules)
    broken = flags.select(pl.any_horizontal(pl.all()).alias("broken")).to_series()

    sanitized = (
        parsed.select(FLEET_COLUMNS)
        .filter(~broken)
        .select(pl.col(c).cast(FLEET_DTYPES[c]) for c in FLEET_COLUMNS)
    )
    reasons = _reason_lists(flags.filter(broken), rules)
    quarantine = pl.concat(
        [reasons, corrupted.filter(broken).select(FLEET_COLUMNS)], how="horizontal"
    ).select(list(QUARANTINE_SCHEMA.columns))
    return SplitFleet(sanitized, quarantine)


def reason_counts(quarantine: pl.DataFrame) -> pl.DataFrame:
    """How often each reason code occurs: the triage queue at a glance."""
    return (
        quarantine.select(pl.col("reasons").explode().alias("reason"))
        .group_by("reason")
        .len("records")
        .sort("records", "reason", descending=[True, False])
    )
