"""One device's day as a small chart: what was measured, what was interpolated, the outages."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def _figure(width_in: float, height_in: float) -> Figure:
    """matplotlib is imported with the first chart: runs that draw none start ~0.4 s faster."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in))


def _png(figure: Figure) -> bytes:
    """A bare Figure on the Agg canvas: no pyplot, no global state, parallel runs draw at once."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def busiest_device(timeseries: pl.DataFrame) -> str | None:
    """The device with the most mixed day (most interpolated and outage slots, then id), so
    the chart shows every kind of slot when the partition has one."""
    if timeseries.height == 0:
        return None
    ranked = (
        timeseries.group_by("device_id")
        .agg(
            pl.col("is_interpolated").sum().alias("i"),
            pl.col("is_outage").sum().alias("o"),
            pl.col("is_measured").sum().alias("m"),
        )
        .with_columns(
            ((pl.col("i") > 0).cast(pl.Int8) + (pl.col("o") > 0) + (pl.col("m") > 0)).alias("k")
        )
        .sort(["k", "i", "device_id"], descending=[True, True, False])
    )
    return ranked["device_id"][0]


def device_day_png(timeseries: pl.DataFrame, device_id: str) -> bytes:
    """Battery % and temperature °C over the day's slots: dots measured, crosses interpolated,
    grey bands outages."""
    day = timeseries.filter(pl.col("device_id") == device_id).sort("slot_ts")
    figure = _figure(7.0, 2.8)
    battery = figure.add_subplot(1, 1, 1)
    temperature = battery.twinx()
    times = day["slot_ts"].dt.replace_time_zone(None).to_list()
    for axis, column, color in (
        (battery, "battery_pct", "#1565c0"),
        (temperature, "temperature_c", "#c62828"),
    ):
        axis.plot(times, day[column].to_list(), color=color, linewidth=1)
        for flag, marker in (("is_measured", "o"), ("is_interpolated", "x")):
            part = day.filter(pl.col(flag))
            axis.scatter(
                part["slot_ts"].dt.replace_time_zone(None).to_list(),
                part[column].to_list(),
                color=color,
                marker=marker,
                s=12,
            )
    step = day["slot_ts"].diff().drop_nulls().min() if day.height > 1 else None
    for start in day.filter(pl.col("is_outage"))["slot_ts"].dt.replace_time_zone(None):
        battery.axvspan(start, start + step if step else start, color="#bdbdbd", alpha=0.5)
    battery.set_ylabel("battery %", color="#1565c0")
    temperature.set_ylabel("temperature °C", color="#c62828")
    battery.set_title(f"{device_id}: o measured, x interpolated, grey outage (UTC)", fontsize=9)
    figure.autofmt_xdate()
    return _png(figure)
