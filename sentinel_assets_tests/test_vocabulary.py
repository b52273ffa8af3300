"""The fleet's vocabulary comes from a file, not from code: the packaged `fleet.toml` is the
simulator's fleet, `SENTINEL_FLEET_CONFIG` replaces it, a new region is a new partition, and a
bad file ends every command with one sentence naming the file and the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel_assets import contracts, vocabulary
from sentinel_assets.contracts import RECORD_ID_STRIDE, Region
from sentinel_assets.vocabulary import (
    DEFAULT_FLEET_FILE,
    FLEET_CONFIG_ENV,
    MAX_REGION_NUMBER,
    REGION_NAME_PATTERN,
    FleetVocabulary,
    FleetVocabularyError,
    load,
)

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = [sys.executable, "-c", "import sys; from sentinel_assets.cli.main import main; "
            "sys.exit(main())"]  # fmt: skip

# Record ids and seeds of every existing warehouse derive from these numbers and codes: the
# packaged file must keep them exactly as they were when they were constants in code.
SIMULATOR_REGIONS = (
    Region("us-east", "USE", 0, "en_US"),
    Region("us-west", "USW", 1, "en_US"),
    Region("eu-central", "EUC", 2, "de_DE"),
    Region("eu-west", "EUW", 3, "fr_FR"),
    Region("ap-south", "APS", 4, "en_IN"),
    Region("ap-northeast", "APN", 5, "ja_JP"),
    Region("sa-east", "SAE", 6, "pt_BR"),
    Region("af-south", "AFS", 7, "en_GB"),
)
SIMULATOR_MODELS = ("gw-100", "gw-200", "sensor-s1", "sensor-s2", "cam-x3")


def default_file() -> dict:
    return tomllib.loads(DEFAULT_FLEET_FILE.read_text())


def toml(value: object) -> str:
    return json.dumps(value)  # strings, numbers and lists of them read the same in TOML


def fleet_toml(data: dict) -> str:
    """`data` (the shape of fleet.toml) written back as TOML."""
    tables = ("regions", "models")
    # plain keys (and empty lists of tables) first: TOML puts them before the first table
    lines = [f"{key} = {toml(v)}" for key, v in data.items() if key not in tables or v == []]
    for table in tables:
        for entry in data.get(table, []):
            lines += ["", f"[[{table}]]", *(f"{key} = {toml(v)}" for key, v in entry.items())]
    return "\n".join(lines) + "\n"


def write_fleet(folder: Path, data: dict) -> Path:
    path = folder / "fleet.toml"
    path.write_text(fleet_toml(data))
    return path


def with_region(**region: object) -> dict:
    data = default_file()
    data["regions"] = [*data["regions"], region]
    return data


NINTH_REGION = {"name": "me-central", "code": "MEC", "number": 8, "site_locale": "ar_AE"}


# --- The packaged file ---------------------------------------------------------------------


def test_the_packaged_file_is_the_simulators_fleet_as_it_was_in_code():
    assert os.environ.get(FLEET_CONFIG_ENV) is None  # the suite runs on the default file
    assert contracts.REGION_TABLE == SIMULATOR_REGIONS
    assert tuple(r.name for r in SIMULATOR_REGIONS) == contracts.REGIONS
    assert contracts.MODELS == SIMULATOR_MODELS
    assert (
        set(contracts.CAMPAIGN_TARGETS) == set(contracts.PREVIOUS_IMAGES) == set(SIMULATOR_MODELS)
    )
    assert contracts.HARDWARE_REVS == ("rev-a", "rev-b", "rev-c")


def test_the_contracts_export_exactly_what_the_file_says():
    fleet = load(DEFAULT_FLEET_FILE)
    assert fleet == contracts.FLEET_VOCABULARY
    assert (
        tuple(Region(r.name, r.code, r.number, r.site_locale) for r in fleet.regions)
        == contracts.REGION_TABLE
    )
    for model in fleet.models:
        assert contracts.CAMPAIGN_TARGETS[model.name] == model.campaign_target
        assert contracts.PREVIOUS_IMAGES[model.name] == model.previous_images
        # the campaign moves every model forward: no target is among its previous images
        assert model.campaign_target not in model.previous_images


def test_the_largest_region_number_still_gives_record_ids_that_fit_int64():
    assert (MAX_REGION_NUMBER + 1) * RECORD_ID_STRIDE - 1 <= 2**63 - 1
    assert (MAX_REGION_NUMBER + 2) * RECORD_ID_STRIDE - 1 > 2**63 - 1


def test_a_file_round_trips_through_the_test_writer(tmp_path):
    assert load(write_fleet(tmp_path, default_file())) == load(DEFAULT_FLEET_FILE)


# --- Bad files: one sentence naming the file and the field ---------------------------------


def without_regions() -> dict:
    data = default_file()
    del data["regions"]
    return data


def replaced(table: str, index: int, **changes: object) -> dict:
    data = default_file()
    data[table][index] = {**data[table][index], **changes}
    return data


BAD_FILES = {
    "duplicate number": (
        with_region(**{**NINTH_REGION, "number": 3}),
        "regions.number must be unique, but 3 is used more than once",
    ),
    "duplicate code": (
        with_region(**{**NINTH_REGION, "code": "USE"}),
        "regions.code must be unique, but 'USE' is used more than once",
    ),
    "duplicate name": (
        with_region(**{**NINTH_REGION, "name": "eu-west"}),
        "regions.name must be unique, but 'eu-west' is used more than once",
    ),
    "name with a quote": (
        with_region(**{**NINTH_REGION, "name": "eu'west"}),
        'regions[8].name "eu\'west" is not lower-case letters and digits joined by single dashes',
    ),
    "name with a slash": (
        with_region(**{**NINTH_REGION, "name": "eu/west"}),
        "regions[8].name 'eu/west' is not lower-case letters",
    ),
    "upper-case name": (
        replaced("regions", 0, name="US-East"),
        "regions[0].name 'US-East' is not lower-case letters",
    ),
    "no regions": (without_regions(), "regions Field required"),
    "empty regions": ({**default_file(), "regions": []}, "regions Tuple should have at least 1"),
    "empty models": ({**default_file(), "models": []}, "models Tuple should have at least 1"),
    "code of four letters": (
        replaced("regions", 2, code="EUCE"),
        "regions[2].code 'EUCE' is not three upper-case letters",
    ),
    "negative number": (
        replaced("regions", 1, number=-1),
        "regions[1].number Input should be greater than or equal to 0",
    ),
    "number that overflows record ids": (
        replaced("regions", 1, number=MAX_REGION_NUMBER + 1),
        f"regions[1].number Input should be less than or equal to {MAX_REGION_NUMBER}",
    ),
    "number as text": (replaced("regions", 1, number="1"), "regions[1].number Input should be"),
    "unknown locale": (
        replaced("regions", 4, site_locale="xx_XX"),
        "regions[4].site_locale 'xx_XX' is not a Faker locale",
    ),
    "unknown field": (replaced("regions", 0, colour="red"), "regions[0].colour Extra inputs"),
    "bad firmware": (
        replaced("models", 0, campaign_target="4.2"),
        "models[0].campaign_target '4.2' is not a version x.y.z",
    ),
    "no previous image": (
        replaced("models", 1, previous_images=[]),
        "models[1].previous_images Tuple should have at least 1",
    ),
    "negative bias": (
        replaced("models", 2, failure_bias=-0.5),
        "models[2].failure_bias Input should be greater than or equal to 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_one_sentence_naming_the_file_and_the_field(tmp_path, case):
    data, problem = BAD_FILES[case]
    path = write_fleet(tmp_path, data)
    with pytest.raises(FleetVocabularyError) as raised:
        load(path, setting=FLEET_CONFIG_ENV)
    message = str(raised.value)
    assert message.startswith(f"Fleet file {path} ({FLEET_CONFIG_ENV}) is invalid: ")
    assert problem in message
    assert "\n" not in message and "pydantic" not in message


def test_a_missing_file_and_one_that_is_not_toml_are_named(tmp_path):
    with pytest.raises(FleetVocabularyError, match=r"^Fleet file \S+missing.toml does not exist"):
        load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[regions]]\nname = us-east\n")
    with pytest.raises(FleetVocabularyError) as raised:
        load(broken)
    assert str(raised.value).startswith(f"Fleet file {broken} is not valid TOML: ")
    assert "line 2" in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_file_is_a_value_error_so_callers_treat_it_as_bad_input():
    assert issubclass(FleetVocabularyError, ValueError)


@given(st.from_regex(REGION_NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 64))
def test_every_name_of_the_safe_pattern_is_accepted_as_a_region(name):
    fleet = default_file()
    fleet["regions"] = [{**NINTH_REGION, "name": name}]
    assert FleetVocabulary.model_validate(fleet).regions[0].name == name


@given(st.text(min_size=1, max_size=20).filter(lambda s: any(c not in SAFE for c in s)))
def test_a_name_with_any_character_outside_the_safe_set_is_refused(name):
    fleet = default_file()
    fleet["regions"] = [{**NINTH_REGION, "name": name}]
    with pytest.raises(ValueError, match="lower-case letters and digits"):
        FleetVocabulary.model_validate(fleet)


SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


# --- The whole process: configuration only ---------------------------------------------------


def run(code_or_argv: list[str], fleet_file: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        FLEET_CONFIG_ENV: str(fleet_file),
        "SENTINEL_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    return subprocess.run(
        code_or_argv, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


@pytest.mark.parametrize("case", ["missing", "not toml", "duplicate number", "slash", "none"])
def test_sentinel_refuses_a_bad_fleet_file_in_one_line_with_status_2(tmp_path, case):
    files = {
        "missing": None,
        "not toml": "regions = [",
        "duplicate number": fleet_toml(BAD_FILES["duplicate number"][0]),
        "slash": fleet_toml(BAD_FILES["name with a slash"][0]),
        "none": fleet_toml(without_regions()),
    }
    path = tmp_path / "fleet.toml"
    if files[case] is not None:
        path.write_text(files[case])
    argv = ["--help"] if case in ("missing", "slash") else ["demo"]
    done = run([*SENTINEL, *argv], path, tmp_path)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"sentinel: Fleet file {path} ({FLEET_CONFIG_ENV})")
    assert not (tmp_path / "home").exists()  # refused before anything was written


NINTH_REGION_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import dagster as dg
    import polars as pl
    from sentinel_assets import contracts, paths
    from sentinel_assets.cli.main import main
    from sentinel_assets.definitions import defs
    from sentinel_assets.generate import generate_fleet
    from sentinel_assets.telemetry import lake
    from sentinel_assets.telemetry.simulate import SimulationPlan, readings

    region, landing = sys.argv[1], Path(sys.argv[2])
    graph = defs().resolve_asset_graph()
    fleet_keys = graph.get(dg.AssetKey("raw_fleet")).partitions_def.get_partition_keys()
    events_def = graph.get(dg.AssetKey("telemetry_events")).partitions_def
    event_regions = [
        d.partitions_def.get_partition_keys() for d in events_def.partitions_defs
        if d.name == "region"
    ][0]
    fleet = generate_fleet(region, 30, seed=3, as_of=SimulationPlan.as_of)
    contracts.FleetRecord.validate(fleet)  # the new region's fleet keeps the contract
    status = [
        main(["simulate", "--regions", region, "--days", "1", "--devices-per-region", "5",
              "--malformed-share", "0", "--out", str(landing)]),
        main(["ingest", str(landing)]),
    ]
    root = paths.lake_root(paths.data_home())
    events = lake.scan_events(root).collect()
    dead = pl.read_parquet(root / lake.DEAD_LETTERS / "*.parquet")
    print(json.dumps({
        "fleet_partitions": fleet_keys,
        "event_regions": event_regions,
        "status": status,
        "first_record_id": fleet["record_id"].min(),
        "device_code": fleet["device_id"][0][3:6],
        "events_by_region": dict(events.group_by("region").len().iter_rows()),
        "simulated_readings": readings(
            region, SimulationPlan(days=1, devices_per_region=5, malformed_share=0)
        ).height,
        "dead_reasons": sorted(dead["reason"].to_list()),
        "dead_raw": sorted(dead["raw"].to_list()),
    }))
    """
)


@pytest.mark.slow
def test_a_ninth_region_is_a_configuration_change_that_adds_a_partition(tmp_path):
    fleet_file = write_fleet(tmp_path, with_region(**NINTH_REGION))
    landing = tmp_path / "landing"
    landing.mkdir()
    # One hand-written file beside the simulated ones: a reading of the new region (accepted),
    # one of a region and one of a model the fleet file does not list (dead letters).
    reading = {
        "device_id": "SN-MEC-00000009",
        "region": "me-central",
        "ts": "2026-10-31T12:00:00+00:00",
        "firmware_from": "4.1.0",
        "firmware_to": "4.2.0",
        "model": "gw-100",
        "update_status": "pending",
        "battery_pct": 80.0,
        "temperature_c": 30.0,
        "signal_dbm": -70,
        "retry_count": 0,
    }
    lines = [
        reading,
        {**reading, "region": "mars-north", "device_id": "SN-MAR-00000001"},
        {**reading, "model": "gw-999", "device_id": "SN-MEC-00000010"},
    ]
    (landing / "gateway.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    done = run(
        [sys.executable, "-c", NINTH_REGION_SCRIPT, "me-central", str(landing)],
        fleet_file,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    expected = [*contracts.REGIONS, "me-central"]
    assert found["fleet_partitions"] == expected
    assert sorted(found["event_regions"]) == sorted(expected)
    assert found["status"] == [0, 0]
    assert found["first_record_id"] == NINTH_REGION["number"] * RECORD_ID_STRIDE
    assert found["device_code"] == NINTH_REGION["code"]
    # every simulated reading of the new region (resent ones kept once) and the hand-written one
    assert found["events_by_region"] == {"me-central": found["simulated_readings"] + 1}
    assert found["dead_reasons"] == ["model:unknown", "region:unknown"]
    assert any("mars-north" in raw for raw in found["dead_raw"])
    assert any("gw-999" in raw for raw in found["dead_raw"])


def test_the_vocabulary_is_loaded_once_per_process():
    assert vocabulary.configured() is vocabulary.configured() is contracts.FLEET_VOCABULARY


DAGSTER_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, traceback
    from sentinel_assets.definitions import defs
    try:
        defs()
    except Exception as error:
        frames = [f.filename for f in traceback.extract_tb(error.__traceback__)]
        print(json.dumps({
            "error": type(error).__name__,
            "message": str(error),
            "context": error.__cause__ is None and error.__suppress_context__,
            "our_frames": [f.rsplit("/", 2)[-2:] for f in frames if "sentinel_assets" in f],
        }))
    """
)


def test_a_dagster_load_reports_a_bad_fleet_file_as_its_one_sentence(tmp_path):
    """What `dagster dev` or `dg check defs` show: the sentence, and no import chain."""
    path = write_fleet(tmp_path, BAD_FILES["duplicate number"][0])
    done = run([sys.executable, "-c", DAGSTER_LOAD_SCRIPT], path, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["error"] == "FleetVocabularyError"
    assert found["message"].startswith(f"Fleet file {path} ({FLEET_CONFIG_ENV}) is invalid: ")
    assert BAD_FILES["duplicate number"][1] in found["message"]
    assert found["context"] is True  # no "during handling of the above exception"
    assert found["our_frames"] == [["sentinel_assets", "definitions.py"]]
