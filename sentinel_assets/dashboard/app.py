"""Sentinel's operations dashboard (Streamlit): `make dashboard`, or
`streamlit run sentinel_assets/dashboard/app.py`.

A thin layer: every number comes from `data` (read-only warehouse loads), `whatif` (the
pipeline's own `decide_recovery` under the chosen policy) or `launch` (Dagster GraphQL).
Views: `?view=overview` (default), `?view=triage` (with `&region=`), `?view=whatif`,
`?view=upload` (a telemetry file into the landing zone, and its ingestion result).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from pathlib import Path

import altair as alt
import polars as pl
import streamlit as st

from sentinel_assets import paths
from sentinel_assets.contracts import ACTIONS, REGIONS
from sentinel_assets.dashboard import data, launch, upload, whatif
from sentinel_assets.recovery import RecoveryPolicy

VIEWS = {
    "overview": "Fleet overview",
    "triage": "Triage queue",
    "whatif": "What-if",
    "upload": "Upload telemetry",
}
CHANGED_ROWS_SHOWN = 200
TRIAGE_ROWS_SHOWN = 500
DEFAULT_POLICY = RecoveryPolicy()


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


# --- views ---------------------------------------------------------------------------------


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
        shown.head(TRIAGE_ROWS_SHOWN).with_columns(pl.col("reasons").list.join(", ")),
        hide_index=True,
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


def what_if_view(path: Path, version: tuple[float, ...]) -> None:
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

    counts = result.counts
    totals = counts.group_by("action").agg(pl.col("materialized", "what_if").sum())
    by_action = {row["action"]: row for row in totals.iter_rows(named=True)}
    st.markdown(
        f"**Actions, all regions** (what-if vs materialized; recomputed in {seconds:.2f} s)"
    )
    columns = st.columns(len(ACTIONS) + 1)
    for column, action in zip(columns, ACTIONS, strict=False):
        row = by_action.get(action, {"what_if": 0, "materialized": 0})
        column.metric(
            action,
            f"{row['what_if']:,}",
            delta=f"{row['what_if'] - row['materialized']:+,}",
            delta_color="off",
        )
    columns[-1].metric("devices whose action changes", f"{result.changes.height:,}")
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
        version = data.data_version(path)
        freshness(path)
        {"overview": overview, "triage": triage, "whatif": what_if_view}[view](path, version)
    except data.WarehouseError as error:
        st.error(str(error))


if __name__ == "__main__":  # `streamlit run` and AppTest run the script as __main__
    main()
