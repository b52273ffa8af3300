"""The stream in Dagster: the consumers' figures become observations of the external asset
`mqtt_telemetry_stream`, and a region that sends nothing for the configured time fails
`regions_reporting` and raises one alert per silence."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from sentinel_assets import paths
from sentinel_assets.definitions import defs
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.defs.stream_assets import REGIONS_REPORTING, STREAM_ASSET, regions_reporting
from sentinel_assets.defs.stream_sensors import stream_health_sensor
from sentinel_assets.stream import health
from sentinel_assets.stream.settings import SILENCE_ENV, StreamConfigError, silence_seconds

MIN = 60.0


def status(consumer: str, now: float, started_ago: float, heard_ago: dict[str, float], **extra):
    return health.ConsumerStatus.from_json(
        {
            "consumer": consumer,
            "started_at": now - started_ago,
            "written_at": extra.pop("written_at", now),
            "subscribed": True,
            "messages": 10,
            "messages_per_second": extra.pop("rate", 5.0),
            "queued": extra.pop("queued", 0),
            "last_message_at": {r: now - ago for r, ago in heard_ago.items()},
            "messages_by_region": {r: 5 for r in heard_ago},
        }
    )


def silent(consumers, regions=("eu-west", "us-east"), limit=15 * MIN, now=1e9):
    found = health.silent_regions(health.StreamHealth(now, tuple(consumers)), regions, limit)
    return {s.region: round(s.silent_s / MIN) for s in found}


NOW = 1e9


def test_a_region_heard_within_the_limit_is_not_silent_and_one_past_it_is():
    consumer = status("c", NOW, 60 * MIN, {"eu-west": 14 * MIN, "us-east": 16 * MIN})
    assert silent([consumer], now=NOW) == {"us-east": 16}


def test_a_region_never_heard_is_silent_once_the_stream_was_watched_for_the_limit():
    assert silent([status("c", NOW, 20 * MIN, {"eu-west": 1})], now=NOW) == {"us-east": 20}
    assert silent([status("c", NOW, 5 * MIN, {"eu-west": 1})], now=NOW) == {}


def test_silence_counts_from_the_consumer_start_after_a_restart():
    """Messages queued at the broker while the consumer was down arrive after it starts."""
    consumer = status("c", NOW, 2 * MIN, {"eu-west": 1, "us-east": 90 * MIN})
    assert silent([consumer], now=NOW) == {}


def test_no_running_consumer_judges_no_region():
    stale = status("c", NOW, 90 * MIN, {"eu-west": 80 * MIN}, written_at=NOW - 10 * MIN)
    assert silent([stale], now=NOW) == {}


def test_consumers_that_all_stopped_for_the_limit_are_a_stopped_stream():
    def stopped(*consumers):
        return health.stopped_consumer(health.StreamHealth(NOW, consumers), 15 * MIN)

    a = status("a", NOW, 90 * MIN, {"eu-west": 1}, written_at=NOW - 20 * MIN)
    b = status("b", NOW, 90 * MIN, {"eu-west": 1}, written_at=NOW - 16 * MIN)
    assert stopped(a, b) == b  # the last one to report
    assert stopped(status("c", NOW, 90 * MIN, {}, written_at=NOW - 5 * MIN)) is None  # a restart
    assert stopped(a, status("d", NOW, 90 * MIN, {"eu-west": 1})) is None  # one still runs
    assert stopped() is None  # no stream here at all


def test_consumers_sharing_a_subscription_are_merged():
    a = status("a", NOW, 60 * MIN, {"eu-west": 30 * MIN, "us-east": 1}, rate=4.0, queued=3)
    b = status("b", NOW, 60 * MIN, {"eu-west": 2 * MIN}, rate=6.0, queued=4)
    state = health.StreamHealth(NOW, (a, b))
    assert state.messages_per_second == 10.0 and state.queued == 7
    assert state.messages_by_region() == {"eu-west": 10, "us-east": 5}
    assert silent([a, b], now=NOW) == {}


@pytest.mark.parametrize("raw", ["0", "-3", "abc", "inf", "nan"])
def test_a_bad_silence_setting_is_one_sentence(raw):
    with pytest.raises(StreamConfigError, match=f"{SILENCE_ENV} must be a number"):
        silence_seconds({SILENCE_ENV: raw})


def test_the_silence_setting_defaults_to_15_minutes():
    assert silence_seconds({}) == 15 * MIN
    assert silence_seconds({SILENCE_ENV: "2.5"}) == 150


def test_the_stream_is_an_external_asset_upstream_of_the_lake():
    graph = defs().resolve_asset_graph()
    stream = graph.get(dg.AssetKey(STREAM_ASSET))
    assert not stream.is_materializable
    for child in ("dead_letters", "telemetry_events"):
        assert dg.AssetKey(STREAM_ASSET) in graph.get(dg.AssetKey(child)).parent_keys


def write_status(landing: Path, consumer: health.ConsumerStatus) -> None:
    folder = landing / ".stream" / consumer.consumer
    folder.mkdir(parents=True, exist_ok=True)
    raw = {**consumer.__dict__}
    raw["last_message_at"] = dict(consumer.last_message_at)
    raw["messages_by_region"] = dict(consumer.messages_by_region)
    (folder / health.STATUS_FILE).write_text(json.dumps(raw))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    monkeypatch.delenv("SENTINEL_ALERT_WEBHOOK_URL", raising=False)
    return tmp_path


def tick(home: Path, instance: dg.DagsterInstance):
    resources = build_resources(home)
    context = dg.build_sensor_context(
        instance=instance,
        resources={"telemetry": resources["telemetry"], "catalog": resources["catalog"]},
    )
    result = stream_health_sensor(context)
    for event in getattr(result, "asset_events", []):
        instance.report_runless_asset_event(event)  # what the daemon does with them
    return result


def alert_rows(home: Path) -> list[tuple]:
    with duckdb.connect(str(paths.catalog_path(home)), read_only=True) as conn:
        return conn.sql(
            "SELECT asset, partition, check_name, severity, description FROM alerts ORDER BY 2"
        ).fetchall()


def test_without_a_consumer_the_sensor_skips_quietly(home):
    with dg.instance_for_test() as instance:
        result = tick(home, instance)
    assert isinstance(result, dg.SkipReason) and "no stream consumer" in result.skip_message


def test_a_silent_region_fails_the_check_and_raises_one_alert_per_silence(home):
    landing = paths.landing_root(home)
    now = time.time()
    regions = build_resources(home)["telemetry"].regions
    heard = {r: 10.0 for r in regions if r != "us-east"}
    heard["us-east"] = 20 * MIN
    write_status(landing, status("gw-1", now, 60 * MIN, heard, rate=12.5, queued=40))
    with dg.instance_for_test() as instance:
        first = tick(home, instance)
        tick(home, instance)  # the same silence: no second alert
        observations = instance.fetch_observations(dg.AssetKey(STREAM_ASSET), limit=5).records
        check_key = dg.AssetCheckKey(dg.AssetKey(STREAM_ASSET), REGIONS_REPORTING)
        evaluation = instance.get_latest_asset_check_evaluation_record(check_key)
    assert len(observations) == 2
    figures = observations[0].asset_observation.metadata
    assert figures["messages_per_second"].value == 12.5
    assert figures["messages_queued"].value == 40
    assert "us-east" in figures["regions"].value
    check = first.asset_events[1]
    assert not check.passed and "us-east: silent for 20 min" in check.description
    assert evaluation is not None and not evaluation.event.dagster_event.event_specific_data.passed
    ((asset, region, check_name, severity, text),) = alert_rows(home)
    assert (asset, region, check_name, severity) == (
        STREAM_ASSET,
        "us-east",
        REGIONS_REPORTING,
        "WARN",
    )
    assert text.startswith("Region us-east: silent for 20 min")
    # us-east reports again, then falls silent once more: a new silence, a new alert.
    heard["us-east"] = 16 * MIN
    write_status(landing, status("gw-1", time.time(), 60 * MIN, heard))
    with dg.instance_for_test() as instance:
        tick(home, instance)
    assert len(alert_rows(home)) == 2


def report(home: Path, *, ago: float = 0.0, heard: float = 30.0, skip: int = 0, started=60 * MIN):
    """Consumer gw-1's status, `ago` s old: it heard every region (but the first `skip`)
    `heard` s before writing it."""
    regions = build_resources(home)["telemetry"].regions[skip:]
    at = time.time() - ago
    write_status(
        paths.landing_root(home),
        status("gw-1", at, started, {r: heard for r in regions}, written_at=at),
    )


def test_a_stream_whose_consumers_stopped_fails_the_check_and_raises_one_alert(home):
    report(home, ago=20 * MIN)
    with dg.instance_for_test() as instance:
        first = tick(home, instance)
        tick(home, instance)  # the same stop: no second alert
    check = first.asset_events[1]
    assert not check.passed
    assert "No stream consumer has reported for 20 min (the last was gw-1" in check.description
    ((asset, partition, check_name, _, text),) = alert_rows(home)
    assert (asset, partition, check_name) == (STREAM_ASSET, None, REGIONS_REPORTING)
    assert "restart it" in text


def test_a_consumer_away_for_less_than_the_limit_is_not_judged(home):
    report(home, ago=5 * MIN, heard=1.0)
    with dg.instance_for_test() as instance:
        result = tick(home, instance)
    assert result.asset_events[1].passed
    assert "No stream consumer is running" in result.asset_events[1].description


def test_every_region_reporting_passes(home):
    report(home)
    with dg.instance_for_test() as instance:
        result = tick(home, instance)
    assert result.asset_events[1].passed
    assert "Every region sent a message" in result.asset_events[1].description


def test_the_check_runs_from_the_ui_too(home):
    report(home, skip=1, started=30 * MIN)
    result = regions_reporting(build_resources(home)["telemetry"])
    first = build_resources(home)["telemetry"].regions[0]
    assert not result.passed
    assert f"{first}: nothing received in the 30 min" in result.description
