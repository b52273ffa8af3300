"""Recovery with the recent trend: a fast-draining battery defers, otherwise nothing changes."""

from datetime import timedelta

import polars as pl
import pytest

from sentinel_assets.contracts import RecoveryDecision
from sentinel_assets.recovery import RecoveryPolicy, decide_recovery
from sentinel_assets.timeseries.day import build_day
from sentinel_assets.timeseries.settings import TimeseriesSettings
from sentinel_assets.timeseries.trend import latest_drain
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
