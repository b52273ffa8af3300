"""5a. Hostile settings, chaos and names: any settings document (every field, wrong types,
out of range, unknown keys) is either valid or one sentence naming what is wrong, and a run
with it writes nothing; chaos from 0 to 100 % on every fault kind keeps every record in
exactly one of sanitized_fleet and quarantine, and a failed quarantine gate raises exactly
one alert instead of a crash; region names and partition keys with quotes, semicolons, path
separators or unicode are refused before any SQL or path is built."""

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sentinel_assets import paths, warehouse
from sentinel_assets.contracts import FAULT_KINDS, RECORD_ID, REGIONS, validate_region
from sentinel_assets.defs.resources import SentinelSettings, build_resources
from sentinel_assets.defs.sensors import check_failure_alerts
from sentinel_assets_tests.reliability.shared import lost_and_duplicated
from sentinel_assets_tests.reliability.table import ScenarioRow, full_size, sized

DEVICES = sized(300, 10_000)
CHECK_FAILED = "DagsterAssetCheckFailedError"
HOSTILE = st.sampled_from(
    ["eu-west'; DROP TABLE alerts; --", "../../etc", "eu/west", "eu-west\\x", 'eu"west',
     "eu-wést", "東京", "eu-west\n", "", " eu-west", "EU-WEST", "eu--west", "x" * 300]
)  # fmt: skip
WRONG = st.one_of(
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.none(),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
)


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every settings field, as a path through the nested sections."""
    found = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found += leaves(kind, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


FIELDS = leaves(SentinelSettings)


def nest(path: tuple[str, ...], value: Any, into: dict) -> dict:
    section = into
    for part in path[:-1]:
        section = section.setdefault(part, {})
    section[path[-1]] = value
    return into


@st.composite
def settings_documents(draw) -> tuple[dict, bool]:
    """A settings document with some fields set to anything, maybe an unknown key; and
    whether it is surely invalid (an unknown key is)."""
    document: dict = {}
    for path in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        nest(path, draw(WRONG), document)
    unknown = draw(st.booleans())
    if unknown:
        section = draw(st.sampled_from([(), *{f[:-1] for f in FIELDS if len(f) > 1}]))
        nest((*section, "no_such_setting"), 1, document)
    return document, unknown


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.startswith("Invalid settings: ") and len(message) < 2000


def fleet_run(definitions, instance, home: Path, run_config: dict | None = None, **kwargs):
    return definitions.resolve_job_def("fleet_refresh").execute_in_process(
        instance=instance,
        resources=build_resources(home),
        run_config=run_config or {},
        raise_on_error=False,
        **kwargs,
    )


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    (failure, *_) = [e for e in result.all_events if e.is_step_failure]
    return failure.event_specific_data.error.message


@pytest.mark.slow
@pytest.mark.reliability("5a. hostile settings, chaos and names")
def test_hostile_settings_chaos_and_names_are_refused_or_survived(
    scenario: ScenarioRow,
    definitions: dg.Definitions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("SENTINEL_DEVICES_PER_REGION", str(DEVICES))
    examples = sized(150, 1_000)

    # Settings: valid, or one sentence naming a field that was set.
    refused: list[tuple[dict, str]] = []

    job = definitions.resolve_job_def("fleet_refresh")

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(settings_documents())
    def any_settings(drawn: tuple[dict, bool]) -> None:
        document, unknown = drawn
        config = {"resources": {"settings": {"config": document}}}
        try:
            # What the Launchpad, GraphQL and `dagster ... -c` check before a run exists.
            dg.validate_run_config(job, config)
        except dg.DagsterInvalidConfigError:
            return  # refused at launch, with the Launchpad's own error list
        try:
            problem = SentinelSettings(**document).invalid_settings
        except Exception as error:  # anything else is a crash, not a sentence
            raise AssertionError(f"{document!r} crashed: {type(error).__name__}") from error
        assert problem is None or one_sentence(problem), problem
        assert problem is not None or not unknown, f"unknown key accepted: {document!r}"
        if problem:
            refused.append((document, problem))

    any_settings()
    scenario.fault(True)  # the property held over every example
    # A few refused documents through a real run: the first step fails with that sentence,
    # nothing is written.
    for document, problem in refused[: sized(3, 10)]:
        home = tmp_path / f"settings-{len(list(tmp_path.iterdir()))}"
        config = {"resources": {"settings": {"config": document}}}
        try:
            with dg.DagsterInstance.ephemeral() as instance:
                result = fleet_run(definitions, instance, home, config, partition_key="eu-west")
            # Past Dagster's config types, the first step fails with the settings' sentence.
            refused = not result.success and problem in first_failure(result)
        except dg.DagsterInvalidConfigError:  # Dagster's own config types refuse it at launch
            refused = True
        scenario.runs += 1
        scenario.fault(refused and not paths.tables_root(home).exists())
        assert refused and not paths.tables_root(home).exists(), document

    # Chaos from 0 to 100 %: conservation, and exactly one alert when the gate fails.
    plans = [dict.fromkeys(FAULT_KINDS, rate) for rate in (0.0, 0.5, 1.0)]
    if full_size():
        plans += [{**dict.fromkeys(FAULT_KINDS, 0.0), kind: 1.0} for kind in FAULT_KINDS]
    for rates in plans:
        home = tmp_path / f"chaos-{len(list(tmp_path.iterdir()))}"
        chosen = {"chaos": {"rates": rates}, "simulation": {"devices_per_region": DEVICES}}
        config = {"resources": {"settings": {"config": chosen}}}
        with dg.DagsterInstance.ephemeral() as instance:
            result = fleet_run(definitions, instance, home, config, partition_key="eu-west")
            alerts = raised_alerts(instance, home, result.run_id)
        scenario.runs += 1
        root = paths.tables_root(home)
        corrupted, sanitized, quarantine = (
            pl.read_parquet(warehouse.partition_file(root, table, "eu-west"))
            for table in ("corrupted_fleet", "sanitized_fleet", "quarantine")
        )
        split = pl.concat([sanitized.select(RECORD_ID), quarantine.select(RECORD_ID)])
        lost, duplicated = lost_and_duplicated(corrupted, split)
        gate = [
            e for e in result.get_asset_check_evaluations()
            if e.check_name == "quarantine_rate_within_gate"
        ]  # fmt: skip
        gate_failed = [e for e in gate if not e.passed]
        expected_alerts = 1 if quarantine.height > 0 else 0
        # A failed blocking check stops the steps downstream by design; any other step
        # failure is a crash.
        crashed = any(
            e.is_step_failure and e.step_failure_data.error.cls_name != CHECK_FAILED
            for e in result.all_events
        )
        ok = (
            lost == 0
            and duplicated == 0
            and len(gate) == 1
            and bool(gate_failed) == (quarantine.height > 0)
            and alerts.count("quarantine_rate_within_gate") == expected_alerts
            and not crashed
        )
        scenario.fault(ok, lost, duplicated)
        assert ok, (rates, lost, duplicated, [e.passed for e in gate], alerts, crashed)

    # Hostile names: refused with one sentence before any path or SQL exists.
    @settings(max_examples=sized(100, 1_000), deadline=None)
    @given(st.one_of(HOSTILE, st.text(max_size=40)))
    def any_name(name: str) -> None:
        if name in REGIONS:
            return
        with pytest.raises(ValueError, match="unknown region") as raised:
            validate_region(name)
        assert "\n" not in str(raised.value).replace(repr(name), "")
        with pytest.raises(ValueError, match="unknown region"):
            warehouse.partition_file(tmp_path / "tables", "sanitized_fleet", name)

    any_name()
    scenario.fault(True)
    home = tmp_path / "hostile-partition"
    with dg.DagsterInstance.ephemeral() as instance:
        result = fleet_run(
            definitions, instance, home, tags={"dagster/partition": "eu-west'; DROP TABLE x; --"}
        )
    scenario.runs += 1
    refused_run = not result.success and "unknown region" in first_failure(result)
    scenario.fault(refused_run and not paths.tables_root(home).exists())
    assert refused_run and not paths.tables_root(home).exists()


def raised_alerts(instance: dg.DagsterInstance, home: Path, run_id: str) -> list[str]:
    """The alert sensor's one tick over the run: the checks it recorded for it."""
    resources = build_resources(home)
    context = dg.build_sensor_context(
        instance=instance, resources={"catalog": resources["catalog"]}
    )
    check_failure_alerts(context)
    catalog = paths.catalog_path(home)
    if not catalog.exists():
        return []
    with duckdb.connect(str(catalog), read_only=True) as conn:
        rows = conn.execute("SELECT check_name FROM alerts WHERE run_id = ?", [run_id]).fetchall()
    return [name for (name,) in rows]
