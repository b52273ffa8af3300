"""Recovery with the recent trend: a fast-draining battery defers, otherwise nothing changes."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from sentinel_assets.contracts import RecoveryDecision
from sentinel_assets.recovery import RecoveryPolicy, decide_recovery
from sentinel_assets.timeseries import store
from sentinel_assets.timeseries.day import build_day
from sentinel_assets.timeseries.settings import TimeseriesSettings
from sentinel_assets.timeseries.trend import latest_drain, recent_drain
from sentinel_assets.validation import check_contract
from sentinel_assets_tests.test_recovery import AS_OF, POLICY, device, fleet, partial
from sentinel_assets_tests.test_timeseries import DAY, MIDNIGHT, readings

DEVICES = (device(), partial(), device(battery_pct=15.0))


def trend_of(drain: float) -> pl.DataFrame:
    frame = fleet(*DEVICES)
    return frame.select("region", "device_id", pl.lit(drain).alias("battery_drain_pct_per_h"))


@pytest.mark.parametrize("drain", [None, 0.5, POLICY.max_battery_drain_pct_per_h])
def test_without_a_fast_trend_the_static_guards_decide_as_before(drain):
    frame = fleet(*DEVICES)
    before = decide_recovery(frame, POLICY, as_of=AS_OF)
    trend = None if drain is None else trend_of(drain)
    assert decide_recovery(frame, POLICY, as_of=AS_OF, trend=trend).equals(before)


def test_a_battery_draining_faster_than_the_limit_is_deferred_even_above_the_guards():
    frame = fleet(*DEVICES)
    decisions = decide_recovery(frame, POLICY, as_of=AS_OF, trend=trend_of(12.0))
    assert decisions.select("action", "reason_code").rows() == [
        ("defer", "battery_draining"),
        ("defer", "battery_draining"),
        ("defer", "battery_draining"),
    ]
    assert "12.0 %/h (limit 5 %/h)" in decisions["reason"][0]
    assert check_contract(decisions, RecoveryDecision.to_schema()).passed
    lenient = RecoveryPolicy(max_battery_drain_pct_per_h=20)
    assert decide_recovery(frame, lenient, as_of=AS_OF, trend=trend_of(12.0)).equals(
        decide_recovery(frame, lenient, as_of=AS_OF)
    )


def test_a_device_the_trend_does_not_list_is_decided_by_the_static_guards():
    frame = fleet(*DEVICES)
    partial_trend = trend_of(12.0).head(1)
    decisions = decide_recovery(frame, POLICY, as_of=AS_OF, trend=partial_trend)
    assert (
        decisions["reason_code"].to_list()[1:]
        == decide_recovery(frame, POLICY, as_of=AS_OF)["reason_code"].to_list()[1:]
    )


def test_the_trend_is_the_latest_24h_drain_of_the_time_series():
    minutes = list(range(0, 600, 15))
    frame = readings(minutes, battery=[90 - 8 * m / 60 for m in minutes])
    series = build_day(frame.lazy(), DAY, TimeseriesSettings()).timeseries
    [row] = latest_drain(series).to_dicts()
    assert row["battery_drain_pct_per_h"] == pytest.approx(8.0)
    assert row["as_of"] == MIDNIGHT + timedelta(minutes=1425)


# --- what `recovery_decisions` reads: the region's latest time series up to its snapshot ---


def series_of(region: str, drains: dict[str, float], day=DAY) -> pl.DataFrame:
    """`device_timeseries` of `day` for devices whose battery falls at the given %/h over the
    day's last ten hours (from 100 %)."""
    minutes = list(range(840, 1440, 15))
    frames = [
        readings(
            minutes, battery=[100 - rate * (m - 840) / 60 for m in minutes], device_id=device_id
        ).with_columns(region=pl.lit(region))
        for device_id, rate in drains.items()
    ]
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    shifted = pl.concat(frames).with_columns(pl.col("ts") + (start - MIDNIGHT))
    return build_day(shifted.lazy(), day, TimeseriesSettings()).timeseries


def test_a_fast_drain_in_the_stored_time_series_defers_a_device_above_the_static_guard(tmp_path):
    frame = fleet(*DEVICES)
    region = frame["region"][0]
    draining, steady, _ = frame["device_id"].to_list()
    assert frame["battery_pct"][0] > POLICY.min_rollback_battery_pct  # the guard lets it pass
    store.write(
        series_of(region, {draining: 8.0, steady: 0.0}),
        store.partition_file(tmp_path, "device_timeseries", DAY, region),
    )
    # A later day than the snapshot is not read (its steady device drains fast there).
    later = DAY + timedelta(days=2)
    store.write(
        series_of(region, {steady: 30.0}, later),
        store.partition_file(tmp_path, "device_timeseries", later, region),
    )
    trend = recent_drain(tmp_path, region, AS_OF)
    assert trend.day == DAY and trend.window == "24h"
    drain = dict(trend.drain.select("device_id", "battery_drain_pct_per_h").iter_rows())
    assert drain[draining] == pytest.approx(8.0) and drain[steady] == pytest.approx(0.0)

    decisions = decide_recovery(frame, POLICY, as_of=AS_OF, trend=trend.drain)
    static = decide_recovery(frame, POLICY, as_of=AS_OF)
    assert decisions.row(0, named=True)["reason_code"] == "battery_draining"
    assert static.row(0, named=True)["reason_code"] != "battery_draining"
    assert decisions.slice(1).equals(static.slice(1))
    assert "8.0 %/h" in decisions["reason"][0]
    assert f"device_timeseries of {DAY}" in trend.describe()


def test_without_a_stored_time_series_the_decisions_are_the_static_ones(tmp_path):
    frame = fleet(*DEVICES)
    region = frame["region"][0]
    later = AS_OF.date() + timedelta(days=1)  # only after the snapshot: not a trend of it
    store.write(
        series_of(region, {frame["device_id"][0]: 30.0}, later),
        store.partition_file(tmp_path, "device_timeseries", later, region),
    )
    for root in (tmp_path, tmp_path / "empty"):
        trend = recent_drain(root, region, AS_OF)
        assert trend.drain is None and trend.day is None
        assert "static guards only" in trend.describe()
        decisions = decide_recovery(frame, POLICY, as_of=AS_OF, trend=trend.drain)
        assert decisions.equals(decide_recovery(frame, POLICY, as_of=AS_OF))
