"""Sentinel's operations dashboard (Streamlit): `make dashboard`, or
`streamlit run sentinel_assets/dashboard/app.py`.

A thin layer: every number comes from `data` (read-only warehouse loads), `whatif` (the
pipeline's own `decide_recovery` under the chosen policy, its own `anomaly_episodes` under the
chosen anomaly thresholds) or `launch` (Dagster GraphQL).
Views: `?view=overview` (default), `?view=triage` (with `&region=`), `?view=whatif`
(recovery policy and anomaly thresholds), `?view=device` (with `&region=`, `&date=` and
`&device=`: a device's day), `?view=upload` (a telemetry file into the landing zone, and its
ingestion result).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import altair as alt
import polars as pl
import streamlit as st

from sentinel_assets import paths
from sentinel_assets.contracts import ACTIONS, REGIONS
from sentinel_assets.dashboard import data, launch, upload, whatif
from sentinel_assets.recovery import RecoveryPolicy
from sentinel_assets.timeseries.anomalies import RULES

VIEWS = {
    "overview": "Fleet overview",
    "triage": "Triage queue",
    "whatif": "What-if",
    "device": "Device drill-down",
    "upload": "Upload telemetry",
}
CHANGED_ROWS_SHOWN = 200
TRIAGE_ROWS_SHOWN = 500
DEFAULT_POLICY = RecoveryPolicy()
DEFAULT_TIMESERIES = whatif.DEFAULT_TIMESERIES
RULE_COLORS = dict(zip(RULES, ["#d32f2f", "#f9a825", "#6a1b9a", "#00897b"], strict=True))
KIND_SHAPES = {"measured": "circle", "interpolated": "triangle-up"}


# --- caches: keyed on the warehouse's data version, so a refresh shows up on the next rerun --


@st.cache_data(max_entries=4, show_spinner=False)
def load_overview(path: str, version: tuple[float, ...]) -> dict[str, pl.DataFrame]:
    return {
        "regions": data.region_overview(Path(path)),
        "heatmap": data.failure_heatmap(Path(path)),
    }


@st.cache_data(max_entries=4, show_spinner=False)
def load_worst_paths(path: str, version: tuple[float, ...]) -> pl.DataFrame:
    return data.worst_upgrade_paths(Path(path))


@st.cache_data(max_entries=4, show_spinner=False)
def load_quarantine(path: str, version: tuple[float, ...]) -> pl.DataFrame:
    return data.quarantine_records(Path(path))


# The sanitized fleet (millions of rows) is kept as one object, never copied per rerun.
@st.cache_resource(max_entries=2, show_spinner="Loading the sanitized fleet ...")
def load_whatif_inputs(path: str, version: tuple[float, ...]) -> data.WhatIfInputs:
    inputs = data.whatif_inputs(Path(path))
    return dataclasses.replace(inputs, fleet=whatif.slim_fleet(inputs.fleet))


# Keyed on the policy's plain values (hashable whatever class the policy is); moving a slider
# back to a value already seen is served from here.
@st.cache_resource(max_entries=16, show_spinner=False)
def compute_whatif(
    path: str,
    version: tuple[float, ...],
    policy_key: tuple[tuple[str, object], ...],
    as_of: datetime,
) -> whatif.WhatIf:
    inputs = load_whatif_inputs(path, version)
    policy = whatif.make_policy(dict(policy_key))
    return whatif.what_if(inputs.fleet, inputs.decisions, inputs.campaigns, policy, as_of=as_of)


# Time-series caches are keyed on `data.timeseries_version` (partition files and lake batches).
@st.cache_data(max_entries=4, show_spinner=False)
def load_device_days(path: str, version: tuple[float, ...]) -> pl.DataFrame:
    return data.device_days(Path(path))


@st.cache_data(max_entries=32, show_spinner=False)
def load_device_day(
    path: str, version: tuple[float, ...], region: str, device_id: str, day: date
) -> data.DeviceDay:
    return data.device_day(Path(path), region, device_id, day)


@st.cache_data(max_entries=4, show_spinner=False)
def load_anomaly_days(path: str, version: tuple[float, ...]) -> list[date]:
    return data.anomaly_days(Path(path))


# A day's readings (with the adjacent days'), kept as one object like the sanitized fleet.
@st.cache_resource(max_entries=2, show_spinner="Loading the day's readings ...")
def load_anomaly_inputs(path: str, version: tuple[float, ...], day: date) -> data.AnomalyInputs:
    return data.anomaly_inputs(Path(path), day)


@st.cache_resource(max_entries=16, show_spinner=False)
def compute_anomaly_whatif(
    path: str, version: tuple[float, ...], day: date, key: tuple[tuple[str, object], ...]
) -> whatif.AnomalyWhatIf:
    inputs = load_anomaly_inputs(path, version, day)
    settings = whatif.make_timeseries_settings(dict(key))
    return whatif.anomaly_what_if(
        inputs.readings, inputs.anomalies, inputs.region_stats, day, settings
    )


# --- views ---------------------------------------------------------------------------------


def total_metrics(
    counts: pl.DataFrame, key: str, values: tuple[str, ...], changed_label: str, changed: int
) -> None:
    """One metric per value of `key` (what-if total, change against materialized) over all
    regions, then the number of rows that change."""
    totals = counts.group_by(key).agg(pl.col("materialized", "what_if").sum())
    by_value = {row[key]: row for row in totals.iter_rows(named=True)}
    columns = st.columns(len(values) + 1)
    for column, value in zip(columns, values, strict=False):
        row = by_value.get(value, {"what_if": 0, "materialized": 0})
        column.metric(
            value,
            f"{row['what_if']:,}",
            delta=f"{row['what_if'] - row['materialized']:+,}",
            delta_color="off",
        )
    columns[-1].metric(changed_label, f"{changed:,}")


def freshness(path: Path) -> None:
    written = data.last_materialized(path)
    shards = written.filter(pl.col("region").is_not_null())
    if shards.is_empty():
        st.caption(f"Warehouse `{path}`: no region shards yet.")
        return
    latest = shards["written_at"].max()
    regions = shards["region"].n_unique()
    st.caption(
        f"Warehouse `{path}` (read-only) · data last materialized "
        f"**{latest:%Y-%m-%d %H:%M:%S} UTC** · {regions} region(s)"
    )


def percent(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    return frame.with_columns((pl.col(c) * 100).round(1) for c in columns if c in frame.columns)


def overview(path: Path, version: tuple[float, ...]) -> None:
    loaded = load_overview(str(path), version)
    regions = loaded["regions"]
    st.subheader("Regions")
    halted = regions.filter(pl.col("campaign") == "halted")["region"].to_list()
    cols = st.columns(4)
    cols[0].metric("Devices (sanitized)", f"{int(regions['devices'].sum()):,}")
    cols[1].metric("Quarantined records", f"{int(regions['quarantined'].sum()):,}")
    cols[2].metric("Regions", regions.height)
    cols[3].metric("Campaigns halted", len(halted))
    if halted:
        st.warning(f"Campaign halted in {', '.join(halted)} (abort rule met).")
    written = data.last_materialized(path).filter(pl.col("asset") == "recovery_outcomes")
    table = percent(
        regions.join(
            written.select("region", pl.col("written_at").alias("materialized_at")),
            on="region",
            how="left",
        ),
        "quarantine_rate",
        "failure_rate",
        "abort_failure_rate",
    )
    statuses = [c for c in table.columns if c.startswith(("before_", "after_"))]
    st.dataframe(
        table.drop(statuses),
        hide_index=True,
        column_config={
            "quarantine_rate": st.column_config.NumberColumn("quarantine %", format="%.1f"),
            "failure_rate": st.column_config.NumberColumn("failure %", format="%.1f"),
            "abort_failure_rate": st.column_config.NumberColumn("abort at %", format="%.1f"),
            "materialized_at": st.column_config.DatetimeColumn(
                "materialized at (UTC)", format="YYYY-MM-DD HH:mm:ss"
            ),
        },
    )
    st.markdown(
        "**Status before and after recovery** (devices per update status, then per status "
        "once the decisions were applied)"
    )
    st.dataframe(
        table.select("region", *statuses),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(c.replace("_", " ", 1).replace("_", " "))
            for c in statuses
        },
    )

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Failure rate by region and model")
        heat = loaded["heatmap"].with_columns((pl.col("failure_rate") * 100).round(1))
        chart = (
            alt.Chart(heat)
            .mark_rect()
            .encode(
                x=alt.X("model:N", title="model", axis=alt.Axis(labelAngle=0)),
                y=alt.Y("region:N", title="region"),
                color=alt.Color(
                    "failure_rate:Q",
                    title="failed + partial %",
                    scale=alt.Scale(scheme="orangered"),
                ),
                tooltip=["region", "model", "devices", "failures", "failure_rate"],
            )
            .properties(height=alt.Step(34))
        )
        text = chart.mark_text(fontSize=11).encode(
            text=alt.Text("failure_rate:Q", format=".1f"), color=alt.value("black")
        )
        st.altair_chart(chart + text)
    with right:
        st.subheader("Worst upgrade paths")
        try:
            worst = load_worst_paths(str(path), version)
        except data.WarehouseError as error:
            st.info(str(error))
        else:
            st.dataframe(
                percent(worst, "failure_rate", "share_of_region_failures").head(15),
                hide_index=True,
                column_config={
                    "failure_rate": st.column_config.NumberColumn("failure %", format="%.1f"),
                    "share_of_region_failures": st.column_config.NumberColumn(
                        "share of region %", format="%.1f"
                    ),
                },
            )


def triage(path: Path, version: tuple[float, ...]) -> None:
    records = load_quarantine(str(path), version)
    st.subheader("Triage queue: quarantined records")
    codes = sorted(records["reasons"].explode().drop_nulls().unique().to_list())
    columns = sorted({code.split(":", 1)[0] for code in codes})
    regions = sorted(records["region_shard"].unique().to_list())
    wanted = st.query_params.get("region")
    left, middle, right = st.columns(3)
    chosen_regions = left.multiselect(
        "Region", regions, default=[wanted] if wanted in regions else [], key="triage_region"
    )
    chosen_codes = middle.multiselect("Reason code", codes, key="triage_reason")
    chosen_columns = right.multiselect("Column", columns, key="triage_column")
    shown = data.filter_quarantine(records, chosen_regions, chosen_codes, chosen_columns)
    st.metric("Records matching", f"{shown.height:,}", help=f"of {records.height:,} quarantined")
    st.dataframe(
        shown.head(TRIAGE_ROWS_SHOWN).with_columns(
            pl.col("reasons").list.join(", "), data.device_link("region_shard", "device_id")
        ),
        hide_index=True,
        column_config={"drill-down": st.column_config.LinkColumn("telemetry", display_text="day")},
    )
    if shown.height > TRIAGE_ROWS_SHOWN:
        st.caption(f"First {TRIAGE_ROWS_SHOWN} rows shown; the download has all of them.")
    st.download_button(
        "Download as CSV",
        data=lambda: data.to_csv(shown),
        file_name="triage_queue.csv",
        mime="text/csv",
        on_click="ignore",
        key="triage_csv",
    )


def policy_controls() -> tuple[dict[str, object], str]:
    """Sliders for every threshold, the retriable kinds and the snapshot time."""
    values: dict[str, object] = {}
    groups = {
        "Rollback guard": [
            "min_rollback_battery_pct",
            "min_rollback_voltage_v",
            "max_rollback_temperature_c",
            "max_boot_attempts",
        ],
        "Retry": [
            "min_retry_battery_pct",
            "max_retries",
            "min_signal_dbm",
            "stale_after_hours",
            "max_battery_drain_pct_per_h",
        ],
        "Campaign abort": ["abort_failure_rate", "abort_min_attempted"],
        "Backoff (next attempt time only)": ["retry_backoff_minutes", "retry_backoff_max_minutes"],
    }
    by_name = {t.name: t for t in whatif.THRESHOLDS}
    for column, (title, names) in zip(st.columns(len(groups)), groups.items(), strict=True):
        with column:
            st.markdown(f"**{title}**")
            for name in names:
                t = by_name[name]
                default = getattr(DEFAULT_POLICY, name)
                label = f"{t.label} ({t.unit})" if t.unit else t.label
                if name in (
                    "abort_min_attempted",
                    "retry_backoff_minutes",
                    "retry_backoff_max_minutes",
                ):
                    kind = int if t.integer else float
                    values[name] = st.number_input(
                        label,
                        min_value=kind(t.low),
                        max_value=kind(t.high),
                        value=kind(default),
                        step=kind(t.step),
                        key=f"thr_{name}",
                    )
                elif t.integer:
                    values[name] = st.slider(
                        label,
                        int(t.low),
                        int(t.high),
                        int(default),
                        int(t.step),
                        key=f"thr_{name}",
                    )
                else:
                    values[name] = st.slider(
                        label,
                        float(t.low),
                        float(t.high),
                        float(default),
                        float(t.step),
                        key=f"thr_{name}",
                    )
            if title == "Retry":
                values["retriable_failure_kinds"] = st.multiselect(
                    "Retriable failure kinds",
                    whatif.RETRIABLE_CHOICES,
                    default=list(DEFAULT_POLICY.retriable_failure_kinds),
                    key="thr_retriable_failure_kinds",
                )
    as_of = st.text_input(
        "Snapshot time the pipeline decided at (as_of)",
        value=data.default_as_of().isoformat(),
        key="as_of",
        help="Staleness is measured from here; SENTINEL_AS_OF sets the default.",
    )
    return values, as_of


WHATIF_TABS = {"recovery": "Recovery policy", "anomalies": "Anomaly thresholds"}


def what_if_view(path: Path, version: tuple[float, ...]) -> None:
    """Two tabs (`&tab=recovery`, default, or `&tab=anomalies`); the anomaly tab is drawn
    first so that a warehouse without a fleet still shows it."""
    wanted = WHATIF_TABS.get(st.query_params.get("tab", ""), WHATIF_TABS["recovery"])
    recovery_tab, anomaly_tab = st.tabs(list(WHATIF_TABS.values()), default=wanted)
    with anomaly_tab:
        anomaly_what_if_view(path)
    with recovery_tab:
        recovery_what_if_view(path, version)


def recovery_what_if_view(path: Path, version: tuple[float, ...]) -> None:
    st.subheader("What-if: change the recovery policy")
    values, as_of_text = policy_controls()
    try:
        policy = whatif.make_policy(values)
        as_of = datetime.fromisoformat(as_of_text)
        if as_of.tzinfo is None:
            raise ValueError(f"as_of must carry a UTC offset, got {as_of_text!r}")
    except ValueError as error:
        st.error(f"This policy cannot be applied: {error}.")
        return
    started = time.perf_counter()
    key = tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in whatif.policy_values(policy).items()
    )
    result = compute_whatif(str(path), version, key, as_of)
    seconds = time.perf_counter() - started

    st.markdown(
        f"**Actions, all regions** (what-if vs materialized; recomputed in {seconds:.2f} s)"
    )
    total_metrics(
        result.counts, "action", ACTIONS, "devices whose action changes", result.changes.height
    )
    halting, resuming = result.halting, result.resuming
    if halting:
        st.error(f"Would halt: {', '.join(halting)}.")
    if resuming:
        st.success(f"Would resume: {', '.join(resuming)}.")
    if not halting and not resuming:
        st.info("No campaign would halt or resume.")

    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Action counts per region** (what-if, and change vs materialized)")
        st.dataframe(result.wide_counts(), hide_index=True)
    with right:
        st.markdown("**Campaigns under this abort rule**")
        campaigns = result.campaigns.select(
            "region", "verdict", "failure_rate", "attempted", "failures", "halted_before", "halted"
        )
        st.dataframe(
            percent(campaigns, "failure_rate"),
            hide_index=True,
            column_config={
                "failure_rate": st.column_config.NumberColumn("failure %", format="%.1f"),
                "halted_before": st.column_config.CheckboxColumn("halted now"),
                "halted": st.column_config.CheckboxColumn("would halt"),
            },
        )

    st.markdown(f"**Devices whose action changes** ({result.changes.height:,})")
    st.dataframe(result.changes.head(CHANGED_ROWS_SHOWN), hide_index=True)
    changes = result.changes
    st.download_button(
        "Download changed devices (CSV)",
        data=lambda: data.to_csv(changes),
        file_name="whatif_changes.csv",
        mime="text/csv",
        on_click="ignore",
        key="whatif_csv",
    )
    launch_section(policy, result)


def launch_section(policy: RecoveryPolicy, result: whatif.WhatIf) -> None:
    st.divider()
    st.markdown("**Launch with this policy** - a `fleet_refresh` run per region in Dagster")
    regions = result.campaigns["region"].to_list() or list(REGIONS)
    changed = sorted(set(result.changes["region"].to_list())) or regions
    left, right = st.columns([2, 1])
    chosen = left.multiselect("Regions", regions, default=changed, key="launch_regions")
    base_url = right.text_input("Dagster UI", value=launch.ui_url(), key="launch_ui_url")
    if st.button("Launch with this policy", type="primary", key="launch"):
        try:
            runs = launch.launch_policy(base_url, policy, chosen)
        except launch.LaunchError as error:
            st.error(str(error))
        else:
            st.session_state["launched"] = [(r.region, r.run_id, r.url) for r in runs]
    for region, run_id, url in st.session_state.get("launched", []):
        st.markdown(f"- {region}: run [`{run_id[:8]}`]({url}) launched")


def anomaly_controls() -> dict[str, object]:
    """A slider for every anomaly threshold, grouped by rule, starting at the defaults."""
    groups = {
        "Hot and low battery": ["hot_temperature_c", "low_battery_pct"],
        "Voltage sag": ["sag_voltage_v", "sag_min_battery_pct"],
        "Signal collapse": ["signal_collapse_dbm"],
        "Temperature z-score": ["zscore_threshold", "zscore_window_minutes", "zscore_min_readings"],
        "Region alert": ["max_anomaly_rate"],
    }
    by_name = {t.name: t for t in whatif.ANOMALY_THRESHOLDS}
    values: dict[str, object] = {}
    for column, (title, names) in zip(st.columns(len(groups)), groups.items(), strict=True):
        with column:
            st.markdown(f"**{title}**")
            for name in names:
                t = by_name[name]
                default = getattr(DEFAULT_TIMESERIES, name)
                label = f"{t.label} ({t.unit})" if t.unit else t.label
                kind = int if t.integer else float
                values[name] = st.slider(
                    label,
                    kind(t.low),
                    kind(t.high),
                    kind(default),
                    kind(t.step),
                    key=f"anom_{name}",
                )
    return values


def anomaly_what_if_view(path: Path) -> None:
    st.subheader("What-if: change the anomaly thresholds")
    version = data.timeseries_version(path)
    try:
        days = load_anomaly_days(str(path), version)
    except data.WarehouseError as error:
        st.info(str(error))
        return
    if not days:
        st.info("No day has materialized time series yet.")
        return
    day = st.selectbox("Day", days, key="anomaly_day")
    values = anomaly_controls()
    try:
        settings = whatif.make_timeseries_settings(values)
    except ValueError as error:
        st.error(f"These thresholds cannot be applied: {error}.")
        return
    started = time.perf_counter()
    try:
        result = compute_anomaly_whatif(str(path), version, day, tuple(values.items()))
    except data.WarehouseError as error:
        st.info(str(error))
        return
    seconds = time.perf_counter() - started
    inputs = load_anomaly_inputs(str(path), version, day)
    other = whatif.materialized_with_other_thresholds(inputs.anomalies)
    if other:
        st.warning(
            "The materialized episodes were found with other thresholds than the defaults "
            f"these sliders start at ({'; '.join(other)}), so the changes below include that "
            "difference."
        )
    st.markdown(
        f"**Anomaly episodes on {day}, all regions** (what-if vs materialized "
        f"`telemetry_anomalies`; recomputed with the pipeline's `anomaly_episodes` over "
        f"{inputs.readings.height:,} readings in {seconds:.2f} s)"
    )
    total_metrics(result.counts, "rule", RULES, "device rules changed", result.changes.height)
    rate = f"{settings.max_anomaly_rate:.0%}"
    if result.starting:
        st.error(f"Would start alerting (anomaly rate above {rate}): {', '.join(result.starting)}.")
    if result.stopping:
        st.success(f"Would stop alerting: {', '.join(result.stopping)}.")
    if not result.starting and not result.stopping:
        st.info("No region would start or stop alerting.")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Episodes per region and rule** (what-if, and change vs materialized)")
        st.dataframe(result.wide_counts(), hide_index=True)
    with right:
        st.markdown(f"**Regions against the anomaly alert rate ({rate})**")
        st.dataframe(
            percent(result.regions, "anomaly_rate", "anomaly_rate_before"),
            hide_index=True,
            column_config={
                "anomaly_rate": st.column_config.NumberColumn("rate %", format="%.1f"),
                "anomaly_rate_before": st.column_config.NumberColumn("rate now %", format="%.1f"),
                "alert_before": st.column_config.CheckboxColumn("alerts now"),
                "alert": st.column_config.CheckboxColumn("would alert"),
            },
        )
    changes = result.changes
    st.markdown(f"**Devices that gain or lose episodes** ({changes.height:,} device rules)")
    st.dataframe(
        changes.head(CHANGED_ROWS_SHOWN).with_columns(data.device_link("region", "device_id", day)),
        hide_index=True,
        column_config={
            "drill-down": st.column_config.LinkColumn("drill-down", display_text="open")
        },
        key="anomaly_changes",
    )
    st.download_button(
        "Download devices that gain or lose episodes (CSV)",
        data=lambda: data.to_csv(changes),
        file_name=f"anomaly_whatif_changes_{day}.csv",
        mime="text/csv",
        on_click="ignore",
        key="anomaly_csv",
    )
    anomaly_launch_section(settings, day, result)


def anomaly_launch_section(
    settings: whatif.TimeseriesSettings, day: date, result: whatif.AnomalyWhatIf
) -> None:
    st.divider()
    st.markdown(
        f"**Launch with these thresholds** - a `{launch.TIMESERIES_JOB}` run per region for "
        f"{day}, the thresholds as run config (`resources.timeseries.config.settings`): it "
        "rewrites that day's time-series tables with them"
    )
    regions = result.regions["region"].to_list()
    left, right = st.columns([2, 1])
    chosen = left.multiselect("Regions", regions, default=regions, key="anomaly_launch_regions")
    base_url = right.text_input("Dagster UI", value=launch.ui_url(), key="anomaly_launch_ui_url")
    if st.button("Launch with these thresholds", key="anomaly_launch"):
        try:
            runs = launch.launch_timeseries(base_url, settings, day, chosen)
        except launch.LaunchError as error:
            st.error(str(error))
        else:
            st.session_state["anomaly_launched"] = [(r.region, r.run_id, r.url) for r in runs]
    for region, run_id, url in st.session_state.get("anomaly_launched", []):
        st.markdown(f"- {day} {region}: run [`{run_id[:8]}`]({url}) launched")


def device_chart(day: data.DeviceDay) -> alt.VConcatChart:
    """One panel per value over the UTC day: a line per stretch between outages, measured
    points as circles and interpolated ones as triangles, outages grey, episodes shaded in
    their rule's colour."""
    interval = data.slot_interval(day.series)

    def naive(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.col(c).dt.replace_time_zone(None)
            for c, t in frame.schema.items()
            if isinstance(t, pl.Datetime)
        )

    points = naive(data.series_points(day.series))
    outages = naive(data.outage_ranges(day.series))
    episodes = naive(data.episode_ranges(day.episodes, interval))
    start = datetime.combine(day.day, datetime.min.time())
    x_scale = alt.Scale(type="utc", domain=[start, start + timedelta(days=1)])
    x = alt.X("slot_ts:T", title="UTC", scale=x_scale, axis=alt.Axis(format="%H:%M"))
    shade_x = alt.X("start:T", scale=x_scale, title="UTC")
    panels = []
    colors = ["#1565c0", "#2e7d32", "#c62828", "#5d4037"]
    formats = {"battery_voltage_v": ".2f"}
    for (value, title), color in zip(data.SERIES_VALUES.items(), colors, strict=True):
        part = points.filter(pl.col("value") == value)
        y = alt.Y(
            "reading:Q",
            title=title,
            scale=alt.Scale(zero=False),
            axis=alt.Axis(format=formats.get(value, "~g")),
        )
        base = alt.Chart(part).encode(x=x, y=y)
        shape = alt.Shape(
            "kind:N",
            title="slot",
            scale=alt.Scale(domain=list(KIND_SHAPES), range=list(KIND_SHAPES.values())),
        )
        layers = [
            alt.Chart(outages)
            .mark_rect(color="#9e9e9e", opacity=0.35)
            .encode(x=shade_x, x2="end:T", tooltip=["start:T", "end:T", "slots"]),
            alt.Chart(episodes)
            .mark_rect(opacity=0.25)
            .encode(
                x=shade_x,
                x2="end:T",
                color=alt.Color(
                    "rule:N",
                    title="anomaly episode",
                    scale=alt.Scale(domain=list(RULE_COLORS), range=list(RULE_COLORS.values())),
                ),
                tooltip=["rule", "start:T", "end:T", "readings"],
            ),
            base.mark_line(color=color, strokeWidth=1).encode(detail="segment:N"),
            # Measured: filled; interpolated: hollow (white inside), so they never look alike.
            base.mark_point(size=40, strokeWidth=1.3, color=color, opacity=1).encode(
                shape=shape,
                fill=alt.condition(
                    alt.datum.kind == "measured", alt.value(color), alt.value("white")
                ),
                tooltip=["slot_ts:T", "kind", alt.Tooltip("reading:Q", format=".2f")],
            ),
        ]
        panels.append(alt.layer(*layers).properties(height=120, width=820))
    return alt.vconcat(*panels).configure_legend(orient="top")


def device_view(path: Path) -> None:
    st.subheader("Device drill-down: a device's day")
    version = data.timeseries_version(path)
    try:
        days = load_device_days(str(path), version)
    except data.WarehouseError as error:
        st.info(str(error))
        return
    if days.is_empty():
        st.info("No device day is materialized yet.")
        return
    params = st.query_params
    regions = sorted(days["region"].unique().to_list())
    wanted_region = params.get("region")
    left, middle, right = st.columns(3)
    region = left.selectbox(
        "Region",
        regions,
        index=regions.index(wanted_region) if wanted_region in regions else 0,
        key="device_region",
    )
    dates = sorted(
        days.filter(pl.col("region") == region)["event_date"].unique().to_list(), reverse=True
    )
    wanted_date = params.get("date")
    as_text = [str(d) for d in dates]
    chosen_day = middle.selectbox(
        "Date",
        dates,
        index=as_text.index(wanted_date) if wanted_date in as_text else 0,
        key="device_date",
    )
    search = right.text_input("Device id contains", key="device_search")
    found = data.find_devices(days, region, chosen_day, search)
    wanted_device = params.get("device")
    if (
        wanted_device
        and wanted_device not in data.find_devices(days, region, chosen_day)["device_id"].to_list()
    ):
        st.info(
            f"Device {wanted_device} has no time series in {region} on {chosen_day}: it sent "
            "no reading that day, or that partition is not materialized. Choose another below."
        )
    if found.is_empty():
        st.info(f"No device of {region} on {chosen_day} has an id containing {search!r}.")
        return
    options = found["device_id"].to_list()
    episodes = dict(zip(options, found["anomaly_episodes"].to_list(), strict=True))
    device_id = st.selectbox(
        f"Device ({len(options):,} match; most anomaly episodes first)",
        options,
        index=options.index(wanted_device) if wanted_device in options else 0,
        format_func=lambda d: f"{d} ({episodes[d]} anomaly episodes)",
        key="device_id",
    )
    params.update({"region": region, "date": str(chosen_day), "device": device_id})
    try:
        day = load_device_day(str(path), version, region, device_id, chosen_day)
    except data.WarehouseError as error:
        st.info(str(error))
        return
    counts = day.slot_counts()
    cols = st.columns(4)
    cols[0].metric("Measured slots", counts["measured"])
    cols[1].metric("Interpolated slots", counts["interpolated"])
    cols[2].metric("Outage slots", counts["outage"])
    cols[3].metric("Anomaly episodes", day.episodes.height)
    written = data.partition_written_at(path, "device_timeseries", chosen_day, region)
    if written is not None:
        st.caption(
            f"{chosen_day}|{region} time series materialized {written:%Y-%m-%d %H:%M:%S} UTC"
        )
    interval = data.slot_interval(day.series)
    st.caption(
        f"{device_id} on {chosen_day} (UTC), {interval.total_seconds() / 60:g}-minute slots: "
        "filled circles measured (the mean of the slot's readings), hollow triangles interpolated "
        "(linear in time between real readings), grey bands outages (no line across them), "
        "coloured bands anomaly episodes by rule."
    )
    st.altair_chart(device_chart(day))
    st.markdown(f"**Anomaly episodes** ({day.episodes.height})")
    if day.episodes.is_empty():
        st.caption("No anomaly episode on this day.")
    else:
        st.dataframe(day.episodes, hide_index=True, key="device_episodes")
    with st.expander("Slots of the day"):
        st.dataframe(day.series.with_columns(data.slot_kind()), hide_index=True, key="device_slots")


def upload_view() -> None:
    st.subheader("Upload a telemetry file")
    landing, lake = paths.landing_root(), paths.lake_root()
    st.caption(
        f"The file is placed in the landing zone `{landing}` the way a gateway does (written "
        "under a `.part` name, then renamed), and Dagster's `landing_sensor` ingests it on its "
        "next tick (the daemon must be running; `sentinel ingest <file>` does the same by hand)."
    )
    chosen = st.file_uploader(
        "Telemetry file: CSV, JSON Lines or Parquet (CSV and JSON Lines may be gzipped)",
        type=list(upload.UPLOAD_TYPES),
        key="upload_file",
    )
    delivered: list[tuple[str, str]] = st.session_state.setdefault("uploads", [])
    if chosen is not None and st.session_state.get("upload_seen") != chosen.file_id:
        st.session_state["upload_seen"] = chosen.file_id
        try:
            delivery = upload.deliver(landing, chosen.name, chosen.getvalue())
        except upload.DeliveryError as error:
            st.error(str(error))
        else:
            delivered.append((delivery.path.name, delivery.batch))
    if delivered:
        upload_results(lake, tuple(delivered))


@st.fragment(run_every=2)
def upload_results(lake: Path, delivered: tuple[tuple[str, str], ...]) -> None:
    """Re-read every 2 s, so a result shows up as soon as the sensor has ingested the file."""
    for name, batch in reversed(delivered):
        result = upload.result(lake, batch)
        st.markdown(f"**{name}** · batch `{batch}`")
        if result is None:
            st.info("Waiting for the landing sensor to ingest this file.")
            continue
        if result.unreadable:
            st.error(f"The whole file could not be read ({result.unreadable}): moved aside.")
        left, middle, right = st.columns(3)
        left.metric("Events accepted", f"{result.accepted:,}")
        middle.metric("Duplicates dropped", f"{result.duplicates:,}")
        right.metric("Dead letters", f"{result.dead_letters:,}")
        st.caption(f"Ingested at {result.ingested_at}")
        if result.dead_letters:
            st.dataframe(result.reasons, hide_index=True, key=f"reasons_{batch}")
            st.dataframe(
                result.letters.with_columns(pl.col("reasons").list.join(", ")),
                hide_index=True,
                key=f"letters_{batch}",
            )


def main() -> None:
    st.set_page_config(page_title="Sentinel fleet dashboard", layout="wide")
    st.title("Sentinel: OTA fleet operations")
    wanted = st.query_params.get("view", "overview")
    st.session_state.setdefault("view", wanted if wanted in VIEWS else "overview")
    view = st.sidebar.radio("View", list(VIEWS), format_func=VIEWS.get, key="view")
    if st.query_params.get("view") != view:
        st.query_params["view"] = view
    if view == "upload":  # needs the landing zone only, not a warehouse
        upload_view()
        return
    path = data.warehouse_path()
    try:
        data.require_warehouse(path)
        version = data.data_version(path)
        freshness(path)
        if view == "device":
            device_view(path)
        else:
            {"overview": overview, "triage": triage, "whatif": what_if_view}[view](path, version)
    except data.WarehouseError as error:
        st.error(str(error))


if __name__ == "__main__":  # `streamlit run` and AppTest run the script as __main__
    main()
