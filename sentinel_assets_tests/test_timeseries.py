"""The time-series domain as a specification: the grid, interpolation at its limits, rolling
windows, anomaly episodes, the SCD2 star schema and the rules the checks report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sentinel_assets import reports
from sentinel_assets.contracts import ASSET_CONTRACTS
from sentinel_assets.timeseries import star, verify
from sentinel_assets.timeseries.day import (
    build_day,
    collect_timeseries,
    device_chunks,
    in_key_order,
)
from sentinel_assets.timeseries.readings import READING_DTYPES, clean_readings
from sentinel_assets.timeseries.settings import TimeseriesSettings
from sentinel_assets.validation import check_contract

DAY = date(2026, 10, 31)
MIDNIGHT = datetime(2026, 10, 31, tzinfo=UTC)
SETTINGS = TimeseriesSettings()
DEVICE = "SN-USE-00000001"


def readings(minutes: list[float], battery: list[float] | None = None, **columns) -> pl.DataFrame:
    """Readings of one device at `minutes` after the day's midnight (negative: the day before)."""
    n = len(minutes)
    frame = {
        "record_id": list(range(n)),
        "region": "us-east",
        "device_id": DEVICE,
        "ts": [MIDNIGHT + timedelta(minutes=m) for m in minutes],
        "battery_pct": battery if battery is not None else [80.0 - i for i in range(n)],
        "battery_voltage_v": [3.9] * n,
        "temperature_c": [20.0 + i for i in range(n)],
        "signal_dbm": [-80.0] * n,
        "update_status": "pending",
        "model": "gw-100",
        "site": "Springfield",
        "hardware_rev": "rev-a",
        "firmware_version": "4.1.0",
    }
    frame.update(columns)
    return pl.DataFrame(frame, schema_overrides=READING_DTYPES).select(list(READING_DTYPES))


def slot(series: pl.DataFrame, minute: int) -> dict:
    [row] = series.filter(pl.col("slot_ts") == MIDNIGHT + timedelta(minutes=minute)).to_dicts()
    return row


def day(frame: pl.DataFrame, s: TimeseriesSettings = SETTINGS):
    return build_day(frame.lazy(), DAY, s)


# --- the grid and interpolation at its limits --------------------------------------------


def test_a_gap_exactly_at_the_limit_is_bridged_and_one_minute_over_is_an_outage():
    at_limit = day(readings([0, 60], battery=[80.0, 60.0])).timeseries
    row = slot(at_limit, 30)
    assert row["is_interpolated"] and row["battery_pct"] == pytest.approx(70.0)
    assert row["gap_minutes"] == 60
    over = day(readings([0, 61], battery=[80.0, 60.0])).timeseries
    row = slot(over, 30)
    assert row["is_outage"] and not row["is_interpolated"] and row["battery_pct"] is None
    assert row["gap_minutes"] == 61


def test_a_device_with_one_reading_has_one_measured_slot_and_the_rest_outage():
    series = day(readings([100])).timeseries
    assert series.height == SETTINGS.slots_per_day
    assert series["is_measured"].sum() == 1 and series["is_interpolated"].sum() == 0
    assert slot(series, 90)["is_measured"] and slot(series, 90)["battery_pct"] == 80.0
    row = slot(series, 105)
    assert row["readings_1h"] == 1 and row["battery_drain_pct_per_h_1h"] is None


def test_readings_out_of_order_give_the_same_series_as_sorted_ones():
    frame = readings([0, 20, 50, 70, 200])
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert day(shuffled).timeseries.equals(day(frame).timeseries)


def test_duplicate_timestamps_keep_the_latest_ingested_reading():
    ts = [MIDNIGHT + timedelta(minutes=m) for m in (0, 0, 30)]
    events = pl.DataFrame(
        {
            "record_id": [1, 2, 3],
            "region": "us-east",
            "device_id": DEVICE,
            "ts": ts,
            "ingested_at": [MIDNIGHT, MIDNIGHT + timedelta(hours=1), MIDNIGHT],
            "battery_pct": [10.0, 90.0, 50.0],
            "battery_voltage_v": None,
            "temperature_c": 20.0,
            "signal_dbm": -80,
            "update_status": "pending",
            "model": "gw-100",
            "site": None,
            "hardware_rev": None,
            "firmware_from": "4.1.0",
            "firmware_to": "4.2.0",
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "ingested_at": pl.Datetime("us", "UTC")},
    )
    clean = clean_readings(events.lazy()).collect()
    assert clean["battery_pct"].to_list() == [90.0, 50.0]
    assert slot(day(clean).timeseries, 0)["battery_pct"] == 90.0


def test_times_are_utc_whatever_offset_they_arrived_with():
    frame = readings([0, 30])
    shifted = frame.with_columns(pl.col("ts").dt.convert_time_zone("America/New_York"))
    events = shifted.with_columns(
        ingested_at=pl.col("ts"), firmware_from=pl.lit("4.1.0"), firmware_to=pl.lit("4.2.0")
    )
    clean = clean_readings(events.lazy()).collect()
    assert clean["ts"].dtype == pl.Datetime("us", "UTC")
    assert clean["ts"].to_list() == frame["ts"].to_list()


def test_interpolation_never_crosses_devices_or_regions():
    a = readings([0])
    b = readings([50], device_id="SN-USE-00000002")
    c = readings([50], region="us-west", device_id=DEVICE)
    series = day(pl.concat([a, b, c])).timeseries
    for keys, part in series.group_by("region", "device_id"):
        assert part["is_interpolated"].sum() == 0, keys


def test_the_previous_days_reading_bridges_midnight_and_the_result_ignores_how_it_was_split():
    frame = readings([-20, 25], battery=[90.0, 80.0])
    row = slot(day(frame).timeseries, 0)
    assert row["is_interpolated"] and row["battery_pct"] == pytest.approx(90 - 10 * 20 / 45)
    # Without the previous day the first slot is an outage: the adjacent partition matters.
    assert slot(day(frame.filter(pl.col("ts") >= MIDNIGHT)).timeseries, 0)["is_outage"]


def test_a_slot_with_several_readings_is_their_mean():
    row = slot(day(readings([1, 5, 10], battery=[30.0, 40.0, 50.0])).timeseries, 0)
    assert row["is_measured"] and row["readings_in_slot"] == 3 and row["battery_pct"] == 40.0


def test_voltage_missing_from_v1_readings_is_interpolated_from_its_own_neighbours():
    frame = readings([0, 20, 60], battery_voltage_v=[3.6, None, 3.8])
    series = day(frame).timeseries
    assert slot(series, 15)["battery_voltage_v"] is None  # measured slot, V1 reading only
    assert slot(series, 30)["battery_voltage_v"] == pytest.approx(3.6 + 0.2 * 30 / 60)


@st.composite
def series_with_gaps(draw):
    """A real-looking day: readings every few minutes with jitter and a few long silences."""
    steps = draw(st.lists(st.floats(1, 40), min_size=2, max_size=60))
    silences = draw(st.lists(st.integers(0, len(steps) - 1), max_size=3))
    minutes = np.cumsum([s + (120 if i in silences else 0) for i, s in enumerate(steps)])
    minutes = [round(float(m), 3) for m in minutes - 30 if m - 30 < 1440]
    battery = draw(st.lists(st.floats(0, 100), min_size=len(minutes), max_size=len(minutes)))
    return minutes, battery


@settings(max_examples=40, deadline=None)
@given(series_with_gaps())
def test_interpolated_values_equal_numpy_interp_and_outages_are_exactly_the_long_gaps(data):
    minutes, battery = data
    frame = readings(minutes, battery=battery)
    series = day(frame).timeseries
    t = np.array(minutes)
    empty = series.filter(~pl.col("is_measured"))
    at = ((empty["slot_ts"] - MIDNIGHT).dt.total_microseconds() / 6e7).to_numpy()
    expected = np.interp(at, t, np.array(battery))
    index = np.searchsorted(t, at)
    inside = (index > 0) & (index < len(t))
    gap = np.where(inside, t[np.minimum(index, len(t) - 1)] - t[np.maximum(index - 1, 0)], np.inf)
    bridged = inside & (gap <= SETTINGS.max_interpolation_gap_minutes + 1e-9)
    assert empty["is_interpolated"].to_list() == bridged.tolist()
    got = empty["battery_pct"].to_numpy()
    np.testing.assert_allclose(got[bridged], expected[bridged], rtol=1e-9, atol=1e-9)
    assert empty.filter(pl.col("is_outage"))["battery_pct"].null_count() == (~bridged).sum()
    assert verify.no_interpolation_across_long_gaps(series, frame, SETTINGS).passed
    assert verify.interpolated_between_neighbours(series, frame).passed
    assert check_contract(series, ASSET_CONTRACTS["device_timeseries"]).passed


def several_devices(days: list[tuple[list[float], list[float]]]) -> pl.DataFrame:
    """One device per (minutes, battery) series, alternating between two regions."""
    return pl.concat(
        readings(m, battery=b, device_id=f"SN-USE-{i:08d}", region=("us-east", "us-west")[i % 2])
        for i, (m, b) in enumerate(days)
    )


@settings(max_examples=20, deadline=None)
@given(st.lists(series_with_gaps(), min_size=1, max_size=6), st.integers(1, 200), st.integers())
def test_runs_of_devices_give_the_rows_of_one_query_over_all_of_them(days, chunk, seed):
    """`collect_timeseries` cuts a partition into runs of whole devices; wherever the cuts
    fall (down to one device per run) and whatever order the readings come in, the result is
    the single query's, row for row."""
    frame = several_devices(days)
    whole = collect_timeseries(frame.lazy(), DAY, SETTINGS, chunk_readings=frame.height)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed % 2**32)
    in_order = frame.sort("region", "device_id")  # sliced, not gathered
    assert in_key_order(in_order)
    for source in (shuffled, in_order):
        in_runs = collect_timeseries(source.lazy(), DAY, SETTINGS, chunk_readings=chunk)
        assert_frame_equal(in_runs, whole)


def test_runs_hold_whole_devices_in_key_order_and_about_the_asked_size():
    frame = several_devices([([0, 5, 10], [1.0, 2.0, 3.0])] * 5)  # 5 devices x 3 readings
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert not in_key_order(shuffled) and in_key_order(shuffled.sort("region", "device_id"))
    for source in (shuffled, shuffled.sort("region", "device_id")):
        runs = device_chunks(source, 6)
        assert [r.height for r in runs] == [6, 6, 3]
        devices = [sorted(set(zip(r["region"], r["device_id"], strict=True))) for r in runs]
        assert [d for run in devices for d in run] == sorted(d for run in devices for d in run)
        assert len({d for run in devices for d in run}) == 5  # none split over two runs
    [whole] = device_chunks(frame, frame.height)
    assert whole is frame  # small enough: one run, as it came


# --- rolling features ---------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(series_with_gaps())
def test_rolling_means_and_the_drain_slope_match_a_direct_computation(data):
    minutes, battery = data
    series = day(readings(minutes, battery=battery)).timeseries
    t, y = np.array(minutes), np.array(battery)
    for row in series.sample(n=min(10, series.height), seed=1).iter_rows(named=True):
        end = (row["slot_ts"] - MIDNIGHT).total_seconds() / 60 + SETTINGS.interval_minutes
        inside = (t >= end - 60) & (t < end)
        assert row["readings_1h"] == inside.sum()
        if inside.sum() == 0:
            assert row["battery_pct_mean_1h"] is None
            continue
        assert row["battery_pct_mean_1h"] == pytest.approx(y[inside].mean(), rel=1e-9, abs=1e-9)
        if inside.sum() >= 2:
            slope = np.polyfit(t[inside] / 60, y[inside], 1)[0]
            assert row["battery_drain_pct_per_h_1h"] == pytest.approx(-slope, rel=1e-6, abs=1e-6)


def test_a_battery_falling_five_points_an_hour_drains_five_percent_per_hour():
    minutes = list(range(0, 1440, 10))
    series = day(readings(minutes, battery=[100 - 5 * m / 60 for m in minutes])).timeseries
    assert slot(series, 720)["battery_drain_pct_per_h_24h"] == pytest.approx(5.0)
    assert slot(series, 720)["battery_drain_pct_per_h_1h"] == pytest.approx(5.0)


# --- anomaly episodes ---------------------------------------------------------------------


def test_hot_and_low_battery_readings_form_one_episode_that_a_long_silence_splits():
    minutes = [0, 10, 20, 30, 200, 210, 220]
    temps = [50.0, 50.0, 50.0, 20.0, 50.0, 50.0, 50.0]
    battery = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    frame = readings(minutes, battery=battery, temperature_c=temps)
    hot = day(frame).anomalies.filter(pl.col("rule") == "hot_low_battery")
    assert hot["readings"].to_list() == [3, 3]
    assert hot["peak_temperature_c"].to_list() == [50.0, 50.0]
    assert hot["thresholds"][0] == "temperature_c > 45 and battery_pct < 20"
    silent = readings([0, 10, 100, 110], battery=[10.0] * 4, temperature_c=[50.0] * 4)
    assert day(silent).anomalies.filter(pl.col("rule") == "hot_low_battery").height == 2


def test_an_episode_across_midnight_is_cut_at_the_day_and_says_so():
    frame = readings([-20, -10, 0, 10, 30], battery=[10.0] * 5, temperature_c=[50.0] * 4 + [20.0])
    [episode] = day(frame).anomalies.filter(pl.col("rule") == "hot_low_battery").to_dicts()
    assert episode["started_before_day"] and not episode["continues_after_day"]
    assert episode["readings"] == 2 and episode["episode_start_ts"] == MIDNIGHT


def test_a_temperature_spike_is_a_zscore_anomaly_and_steady_readings_are_not():
    minutes = list(range(0, 600, 15))
    temps = [20.0 + 0.1 * (i % 3) for i in range(len(minutes))]
    assert day(readings(minutes, temperature_c=temps)).anomalies.height == 0
    temps[30] = 40.0
    rules = day(readings(minutes, temperature_c=temps)).anomalies["rule"].to_list()
    assert rules == ["temperature_zscore"]


def test_anomaly_thresholds_come_from_the_settings():
    frame = readings([0, 10], battery=[30.0, 30.0], temperature_c=[40.0, 40.0])
    assert day(frame).anomalies.height == 0
    strict = TimeseriesSettings(hot_temperature_c=35, low_battery_pct=35)
    assert day(frame, strict).anomalies["rule"].to_list() == ["hot_low_battery"]


def test_settings_refuse_an_interval_that_does_not_divide_a_day():
    with pytest.raises(ValueError, match="must divide a day"):
        TimeseriesSettings(interval_minutes=7)


# --- daily statistics ---------------------------------------------------------------------


def test_daily_stats_count_coverage_and_interpolated_share_of_the_grid():
    result = day(readings([0, 30, 60]))
    [stats] = result.device_stats.to_dicts()
    assert stats["readings_received"] == 3 and stats["readings_expected"] == 96
    assert stats["slots_measured"] == 3 and stats["slots_interpolated"] == 2
    assert stats["coverage"] == pytest.approx(3 / 96)
    assert stats["battery_pct_max"] == 80.0 and stats["battery_pct_p50"] == 79.0
    [region] = result.region_stats.to_dicts()
    assert region["devices"] == 1 and region["anomaly_rate"] == 0.0
    for name, frame in (("daily_device_stats", result.device_stats),
                        ("daily_region_stats", result.region_stats),
                        ("telemetry_anomalies", result.anomalies)):  # fmt: skip
        assert check_contract(frame, ASSET_CONTRACTS[name]).passed, name


def test_the_anomaly_rate_rule_fails_above_the_limit_only():
    frame = readings([0, 10], battery=[10.0, 10.0], temperature_c=[50.0, 50.0])
    assert not verify.anomaly_rate_within_limit(day(frame).region_stats).passed
    lenient = TimeseriesSettings(max_anomaly_rate=1.0)
    assert verify.anomaly_rate_within_limit(day(frame, lenient).region_stats).passed


# --- the star schema ----------------------------------------------------------------------


def test_a_firmware_change_in_the_middle_of_a_day_opens_a_new_scd2_version():
    frame = readings([0, 360, 720, 1080], firmware_version=["4.1.0", "4.1.0", "4.2.0", "4.2.0"])
    devices = star.dim_device(frame.lazy()).collect()
    assert devices["firmware_version"].to_list() == ["4.1.0", "4.2.0"]
    assert devices["valid_from"].to_list() == [MIDNIGHT, MIDNIGHT + timedelta(hours=12)]
    assert devices["valid_to"].to_list() == [MIDNIGHT + timedelta(hours=12), None]
    assert devices["is_current"].to_list() == [False, True]
    assert verify.scd2_windows_contiguous(devices).passed
    facts = star.fact_telemetry(frame.lazy(), devices.lazy()).collect()
    assert facts["device_key"].to_list() == [1, 1, 2, 2]
    assert facts["valid_until"].to_list() == [*frame["ts"][1:], None]
    assert verify.valid_until_is_next_reading(facts).passed
    for name, table in (("dim_device", devices), ("fact_telemetry", facts),
                        ("dim_date", star.dim_date(frame.lazy()).collect())):  # fmt: skip
        assert check_contract(table, ASSET_CONTRACTS[name]).passed, name


def test_overlapping_or_holed_scd2_windows_and_a_wrong_valid_until_are_caught():
    frame = readings([0, 360, 720], firmware_version=["4.1.0", "4.2.0", "4.3.0"])
    devices = star.dim_device(frame.lazy()).collect()
    holed = devices.with_columns(
        pl.when(pl.col("device_key") == 1)
        .then(pl.col("valid_to") - timedelta(minutes=1))
        .otherwise(pl.col("valid_to"))
        .alias("valid_to")
    )
    assert not verify.scd2_windows_contiguous(holed).passed
    overlapping = devices.with_columns(pl.lit(False).alias("is_current"))
    assert not verify.scd2_windows_contiguous(overlapping).passed
    facts = star.fact_telemetry(frame.lazy(), devices.lazy()).collect()
    wrong = facts.with_columns(pl.col("valid_until").fill_null(MIDNIGHT))
    assert not verify.valid_until_is_next_reading(wrong).passed


def test_an_interpolation_across_a_long_gap_is_caught():
    frame = readings([0, 120], battery=[80.0, 40.0])
    series = day(frame).timeseries
    forged = series.with_columns(
        pl.when(pl.col("slot_ts") == MIDNIGHT + timedelta(minutes=60))
        .then(True)
        .otherwise(pl.col("is_interpolated"))
        .alias("is_interpolated"),
        pl.when(pl.col("slot_ts") == MIDNIGHT + timedelta(minutes=60))
        .then(200.0)
        .otherwise(pl.col("battery_pct"))
        .alias("battery_pct"),
    )
    assert not verify.no_interpolation_across_long_gaps(forged, frame, SETTINGS).passed
    assert not verify.interpolated_between_neighbours(forged, frame).passed


# --- the analyst queries on the star schema, against Polars on the same readings ----------

STATE_AT = MIDNIGHT + timedelta(hours=12)  # the time `analysis_queries.sql` asks about


def device_day(device_id: str, region: str, minutes: list[int], hot: range = range(0), **cols):
    """A device's readings at `minutes`: hot (50 °C) and low (10 %) during `hot`, else 25 °C
    and 70 %."""
    temps = [50.0 if m in hot else 25.0 for m in minutes]
    battery = [10.0 if m in hot else 70.0 for m in minutes]
    frame = readings(minutes, battery=battery, temperature_c=temps, device_id=device_id, **cols)
    return frame.with_columns(region=pl.lit(region))


def star_fixture() -> pl.DataFrame:
    """Four devices in two regions: one upgrading mid-day and then running hot on a low
    battery, one silent since before noon, one whose first reading is after noon (hot too),
    one reading every 15 minutes with a reading exactly at noon."""
    upgrade = [m for m in range(0, 1440, 30)]
    return pl.concat(
        [
            device_day(
                "SN-USE-00000001", "us-east", upgrade, range(660, 781),
                firmware_version=["4.1.0" if m < 600 else "4.2.0" for m in upgrade],
            ),
            device_day("SN-USE-00000002", "us-east", list(range(0, 601, 60))),
            device_day("SN-EUW-00000001", "eu-west", list(range(800, 1440, 20)), range(900, 961),
                       firmware_version="4.2.0"),
            device_day("SN-EUW-00000002", "eu-west", list(range(0, 1440, 15))),
        ]
    )  # fmt: skip


def analyst_query(question_start: str) -> str:
    [query] = [q for q in reports.analysis_queries() if q.question.startswith(question_start)]
    return query.sql


def test_the_star_schema_queries_answer_what_polars_computes_from_the_readings():
    frame = star_fixture()
    days = [day(part) for part in frame.partition_by("region")]
    devices = star.dim_device(frame.lazy()).collect()
    tables = {
        "dim_device": devices,
        "fact_telemetry": star.fact_telemetry(frame.lazy(), devices.lazy()).collect(),
        "device_timeseries": pl.concat([d.timeseries for d in days]),
        "telemetry_anomalies": pl.concat([d.anomalies for d in days]),
        "daily_region_stats": pl.concat([d.region_stats for d in days]),
    }
    keys = ["region", "device_id"]
    ordered = frame.sort(*keys, "ts")
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            conn.register(name, table)

        def run(question: str) -> pl.DataFrame:
            return conn.sql(analyst_query(question)).pl()

        state = run("What state was each device in at a given time")
        coverage = run("How complete is each region's telemetry per day")
        by_firmware = run("Which firmware versions have the highest anomaly rate")

    # State at noon: each device's last reading at or before it, with the time of its next.
    expected_state = (
        ordered.with_columns(pl.col("ts").shift(-1).over(keys).alias("valid_until"))
        .filter(pl.col("ts") <= STATE_AT)
        .group_by(keys)
        .agg(pl.all().sort_by("ts").last())
        .select(state.columns)
        .sort(keys)
    )
    assert state.with_columns(pl.col("ts", "valid_until").dt.convert_time_zone("UTC")).equals(
        expected_state
    )
    assert expected_state["valid_until"].null_count() == 1  # the device silent since 10:00
    assert "SN-EUW-00000001" not in expected_state["device_id"]  # first heard after noon

    # Coverage: readings and occupied slots of the day, interpolated and outage slots.
    slots = ordered.with_columns(pl.col("ts").dt.truncate("15m").alias("slot"))
    grid = tables["device_timeseries"]
    expected_coverage = (
        slots.group_by("region")
        .agg(
            pl.col("device_id").n_unique().alias("devices"),
            pl.len().alias("readings_received"),
            pl.struct("device_id", "slot").n_unique().alias("_occupied"),
        )
        .join(
            grid.group_by("region").agg(
                pl.col("is_interpolated").mean().alias("_interpolated"),
                pl.col("is_outage").mean().alias("_outage"),
            ),
            on="region",
        )
        .with_columns(readings_expected=pl.col("devices") * SETTINGS.slots_per_day)
        .with_columns(
            coverage_pct=100 * pl.col("_occupied") / pl.col("readings_expected"),
            interpolated_pct=100 * pl.col("_interpolated"),
            outage_pct=100 * pl.col("_outage"),
        )
        .sort("region")
    )
    exact = ["region", "devices", "readings_received", "readings_expected"]
    assert coverage.select(exact).rows() == expected_coverage.select(exact).rows()
    assert coverage["event_date"].to_list() == [DAY, DAY]
    for column in ("coverage_pct", "interpolated_pct", "outage_pct"):  # rounded to 0.1
        assert coverage[column].to_list() == pytest.approx(
            expected_coverage[column].to_list(), abs=0.05 + 1e-9
        ), column

    # Anomaly rate by firmware: devices that ran it, and those with an episode starting on it.
    starts = (
        tables["telemetry_anomalies"]
        .select(*keys, pl.col("episode_start_ts").alias("ts"))
        .sort(*keys, "ts")
        .join_asof(
            ordered.select(*keys, "ts", "firmware_version"),
            on="ts",
            by=keys,
            check_sortedness=False,
        )
    )
    running = ordered.select("firmware_version", *keys).unique()
    anomalous = starts.select("firmware_version", *keys).unique()
    expected_rate = (
        running.join(anomalous.with_columns(hit=pl.lit(1)), on=["firmware_version", *keys],
                     how="left")
        .group_by("firmware_version")
        .agg(devices=pl.len(), devices_with_anomaly=pl.col("hit").count())
        .with_columns(
            anomaly_rate_pct=(100 * pl.col("devices_with_anomaly") / pl.col("devices")).round(2)
        )
        .sort(["anomaly_rate_pct", "firmware_version"], descending=[True, False])
    )  # fmt: skip
    assert by_firmware.rows() == expected_rate.select(by_firmware.columns).rows()
    assert 0 < expected_rate["devices_with_anomaly"].sum() < expected_rate["devices"].sum()
