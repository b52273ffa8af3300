"""Contract validation: the rules of `contracts` as row-level Polars expressions (for the
sanitizer) and as whole-frame Pandera validations reported for people (for the asset checks).

The models say what a trustworthy record is; this module is the engine that applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from sentinel_assets.contracts import CROSS_FIELD_RULES, FLEET_SCHEMA


@dataclass(frozen=True)
class RowRule:
    """One contract rule as a vectorized test: `violated` is true on rows that break it."""

    column: str
    rule: str
    violated: pl.Expr

    @property
    def code(self) -> str:
        return f"{self.column}:{self.rule}"


def _check_violation(column: str, check: pa.Check) -> RowRule:
    col = pl.col(column)
    stats = check.statistics
    if check.name == "in_range":
        return RowRule(
            column,
            "out_of_range",
            ~col.is_between(stats["min_value"], stats["max_value"]) | _not_finite(col),
        )
    if check.name == "greater_than_or_equal_to":
        return RowRule(column, "out_of_range", col < stats["min_value"])
    if check.name == "isin":
        return RowRule(column, "not_allowed", ~col.is_in(list(stats["allowed_values"])))
    if check.name == "str_matches":
        return RowRule(column, "malformed", ~col.str.contains(stats["pattern"]))
    raise NotImplementedError(
        f"contract check {check.name!r} on {column!r} has no row-level translation; "
        "add one in contracts._check_violation"
    )


def _not_finite(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.Float64).is_nan() | col.cast(pl.Float64).is_infinite()


def row_rules(schema: pa.DataFrameSchema = FLEET_SCHEMA) -> list[RowRule]:
    """Every rule of a contract as a row-level polars expression, in schema order.

    Expressions are null-safe: a rule whose input is null is not violated, because the
    `missing` rule of that column already reports it.
    """
    rules: list[RowRule] = []
    for name, column in schema.columns.items():
        if not column.nullable:
            rules.append(RowRule(name, "missing", pl.col(name).is_null()))
        for check in column.checks:
            rule = _check_violation(name, check)
            rules.append(RowRule(rule.column, rule.rule, rule.violated.fill_null(False)))
        if column.unique:
            first = pl.col(name).is_first_distinct() | pl.col(name).is_null()
            rules.append(RowRule(name, "duplicate", ~first))
    for check in schema.checks:
        cross = CROSS_FIELD_RULES[check.name]
        rules.append(RowRule(cross.column, cross.rule, ~cross.valid.fill_null(True)))
    return rules


@dataclass(frozen=True)
class ContractReport:
    """Outcome of validating a frame against a contract, shaped for people to read."""

    passed: bool
    rows: int
    failing_rows: int
    failure_cases: pl.DataFrame

    def failures_by_check(self) -> pl.DataFrame:
        return (
            self.failure_cases.group_by("column", "check")
            .len("failures")
            .sort("failures", descending=True)
        )


# (id of a contract, columns proven unique) -> (that contract, a copy without those checks)
_WITHOUT_UNIQUE: dict[tuple[int, tuple[str, ...]], tuple[pa.DataFrameSchema, ...]] = {}


def _proven_unique(series: pl.Series) -> bool:
    """Cheap proof that a column holds no duplicate: strictly increasing (one linear pass),
    else one distinct count, instead of Pandera's per-row duplicate mask."""
    if series.null_count():
        return False  # Pandera's rule on repeated nulls is left to Pandera
    if series.is_sorted():
        return series.len() < 2 or not (series.head(-1) == series.tail(-1)).any()
    return series.n_unique() == series.len()


def _contract_for(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """The contract minus the uniqueness checks this frame already passes (same verdict)."""
    proven = tuple(
        name
        for name, column in schema.columns.items()
        if column.unique and name in frame.columns and _proven_unique(frame[name])
    )
    if not proven:
        return schema
    key = (id(schema), proven)
    if key not in _WITHOUT_UNIQUE:  # the schema is kept in the value, so its id stays its own
        relaxed = schema.update_columns({name: {"unique": False} for name in proven})
        _WITHOUT_UNIQUE[key] = (schema, relaxed)
    return _WITHOUT_UNIQUE[key][1]


def check_contract(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ContractReport:
    """Validate lazily so every broken rule is reported, not just the first."""
    relaxed = _contract_for(frame, schema)
    if relaxed is not schema:
        try:  # fast path: a frame that passes is done; one that fails is re-checked in full
            relaxed.validate(frame, lazy=True)
            return ContractReport(True, frame.height, 0, pl.DataFrame())
        except pa.errors.SchemaErrors:
            pass
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.with_columns(pl.col("failure_case").cast(pl.String))
        row_level = cases["index"].drop_nulls().n_unique()
        # A schema-level failure (missing column, wrong type) taints every row.
        failing = frame.height if cases["index"].null_count() else row_level
        return ContractReport(False, frame.height, failing, cases)
    return ContractReport(True, frame.height, 0, pl.DataFrame())
