"""Report rendering: SVG charts for the Dagster UI and the data folder, and analyst queries.

The fleet charts are plain SVG written from the report's small aggregates (see
`sentinel_assets.svg`): no plotting library is imported by a report run, and parallel runs
render at once without shared state.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from sentinel_assets import svg, warehouse
from sentinel_assets.contracts import MODELS, OUTCOME_STATUSES, REGIONS, UPDATE_STATUSES

ANALYSIS_QUERIES_FILE = "analysis_queries.sql"
STATUS_ORDER: tuple[str, ...] = tuple(dict.fromkeys((*UPDATE_STATUSES, *OUTCOME_STATUSES)))
# Healthy or fixed in green, waiting in greys and blues, still broken in reds.
STATUS_COLORS: dict[str, str] = {
    "success": "#2e7d32",
    "recovered": "#66bb6a",
    "rolled_back": "#26a69a",
    "pending": "#9e9e9e",
    "held": "#5c6bc0",
    "deferred": "#ffb300",
    "partial": "#ef6c00",
    "failed": "#c62828",
    "still_failed": "#8e24aa",
    "in_triage": "#6d4c41",
}
LABEL_MIN_SHARE = 0.04
MISSING_FILL = "#eeeeee"
SVG_MEDIA_TYPE = "image/svg+xml"


@dataclass(frozen=True)
class Chart:
    """A rendered chart: its bytes, its media type and the file suffix that goes with it."""

    data: bytes
    media_type: str
    suffix: str


def svg_chart(document: str) -> Chart:
    return Chart(document.encode("utf-8"), SVG_MEDIA_TYPE, ".svg")


def failure_heatmap_svg(rates: pl.DataFrame) -> Chart:
    """Region x model failure rate (columns region, model, failure_rate) as a heatmap, with
    its colour bar; a dash where a region has no device of that model."""
    title = "Failed or partial share of devices, region x model"
    regions = [r for r in REGIONS if r in set(rates["region"])]
    models = [m for m in MODELS if m in set(rates["model"])]
    rate = {(r, m): v for r, m, v in rates.select("region", "model", "failure_rate").iter_rows()}
    top = float(rates["failure_rate"].max() or 0.0)
    cell_w, cell_h = 84, 28
    left = 16 + max((svg.text_width(r) for r in regions), default=0)
    top_y = 40
    grid_w, grid_h = cell_w * len(models), cell_h * len(regions)
    bar_x = left + grid_w + 18
    width = bar_x + 14 + 12 + svg.text_width("100%") + 10
    bar_h = max(grid_h, 84)  # a readable colour bar even for a one-region heatmap
    height = top_y + max(grid_h + 36, bar_h + 10)
    body = [svg.text(width / 2, 18, title, 13, anchor="middle", font_weight="bold")]
    for row, region in enumerate(regions):
        y = top_y + row * cell_h
        body.append(svg.text(left - 8, y + cell_h / 2, region, anchor="end"))
        for col, model in enumerate(models):
            x = left + col * cell_w
            value = rate.get((region, model))
            missing = value is None or value != value  # no device of that model: NaN or absent
            fill = MISSING_FILL if missing else svg.ramp(value / top if top else 0.0)
            label = "-" if missing else f"{value:.0%}"
            body.append(svg.rect(x, y, cell_w, cell_h, fill, stroke="white"))
            body.append(
                svg.text(x + cell_w / 2, y + cell_h / 2, label, anchor="middle",
                         fill=svg.text_on(fill))
            )  # fmt: skip
    for col, model in enumerate(models):
        body.append(
            svg.text(left + col * cell_w + cell_w / 2, top_y + grid_h + 14, model, anchor="middle")
        )
    body.append(svg.rect(bar_x, top_y, 14, bar_h, "url(#failure-rate)", stroke="#666666"))
    tick_format = ".1%" if top < 0.05 else ".0%"  # a few tenths of a percent still differ
    for tick in (t for t in svg.nice_ticks(top, 4) if t <= top + 1e-12):
        y = top_y + bar_h - (tick / top * bar_h if top else 0.0)
        body.append(svg.rect(bar_x + 14, y - 0.5, 4, 1, "#666666"))
        body.append(svg.text(bar_x + 22, y, format(tick, tick_format), 10))
    return svg_chart(
        svg.document(width, height, title, body, defs=svg.vertical_gradient("failure-rate"))
    )


def status_bars_svg(
    counts: pl.DataFrame, title: str = "Fleet status before and after recovery"
) -> Chart:
    """Devices per status before and after recovery (columns phase, status, devices) as two
    stacked bars, a count on every segment wide enough to read, and a legend."""
    statuses = [s for s in STATUS_ORDER if s in set(counts["status"])]
    phases = ("before", "after")
    devices = {
        (p, s): int(n) for p, s, n in counts.select("phase", "status", "devices").iter_rows()
    }
    totals = [sum(devices.get((p, s), 0) for s in statuses) for p in phases]
    scale_top = max(totals, default=0)
    ticks = svg.nice_ticks(scale_top)
    axis_top = max(ticks[-1], 1)
    left, plot_w, bar_h, gap, top_y = 60, 760, 34, 14, 36
    width = left + plot_w + 30
    axis_y = top_y + len(phases) * (bar_h + gap)
    body = [svg.text(width / 2, 16, title, 13, anchor="middle", font_weight="bold")]
    for index, phase in enumerate(phases):
        y = top_y + index * (bar_h + gap)
        body.append(svg.text(left - 8, y + bar_h / 2, phase, anchor="end"))
        x = float(left)
        for status in statuses:
            n = devices.get((phase, status), 0)
            if not n:
                continue
            w = n / axis_top * plot_w
            body.append(svg.rect(x, y, w, bar_h, STATUS_COLORS[status]))
            if n >= LABEL_MIN_SHARE * totals[0]:  # a number on a sliver is unreadable
                body.append(
                    svg.text(x + w / 2, y + bar_h / 2, f"{n:,}", 9, anchor="middle", fill="white")
                )
            x += w
    body.append(svg.rect(left, axis_y, plot_w * scale_top / axis_top, 1, "#666666"))
    for tick in ticks:
        x = left + tick / axis_top * plot_w
        body.append(svg.rect(x - 0.5, axis_y, 1, 4, "#666666"))
        body.append(svg.text(x, axis_y + 14, f"{tick:,.0f}", 10, anchor="middle"))
    body.append(svg.text(left + plot_w / 2, axis_y + 30, "devices", anchor="middle"))
    legend_y = axis_y + 50
    slot = plot_w / 5
    for index, status in enumerate(statuses):
        x = left + (index % 5) * slot
        y = legend_y + (index // 5) * 18
        body.append(svg.rect(x, y - 6, 12, 12, STATUS_COLORS[status]))
        body.append(svg.text(x + 17, y, status))
    height = legend_y + 18 * ((len(statuses) + 4) // 5) + 6
    return svg_chart(svg.document(width, height, title, body))


def write_chart(data: bytes, path: Path) -> Path:
    """Replace a chart file atomically, so a reader never sees half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def markdown_image(data: bytes, alt: str, media_type: str = "image/png") -> str:
    """Markdown that embeds the image itself: the Dagster UI renders it on the asset page."""
    return f"![{alt}](data:{media_type};base64,{base64.b64encode(data).decode('ascii')})"


@dataclass(frozen=True)
class AnalysisQuery:
    """One analyst query: the question it answers, the columns it returns, its SQL."""

    question: str
    columns: tuple[str, ...]
    sql: str


_QUESTION = re.compile(r"^--\s*Q:\s*(?P<text>.+)$")
_COLUMNS = re.compile(r"^--\s*columns:\s*(?P<text>.+)$")


def analysis_queries(text: str | None = None) -> list[AnalysisQuery]:
    """The queries of `analysis_queries.sql`, each led by `-- Q:` and `-- columns:` lines."""
    text = warehouse.read_sql(ANALYSIS_QUERIES_FILE) if text is None else text
    queries: list[AnalysisQuery] = []
    question, columns, body = None, None, []
    for line in text.splitlines():
        if match := _QUESTION.match(line.strip()):
            question, columns, body = match["text"].strip(), None, []
        elif match := _COLUMNS.match(line.strip()):
            columns = tuple(c.strip() for c in match["text"].split(","))
        elif question is not None and not line.strip().startswith("--"):
            body.append(line)
            if line.rstrip().endswith(";"):
                if columns is None:
                    raise ValueError(f"query {question!r} has no `-- columns:` line")
                queries.append(AnalysisQuery(question, columns, "\n".join(body).strip()))
                question, columns, body = None, None, []
    if question is not None:
        raise ValueError(f"query {question!r} does not end with ';'")
    return queries


@dataclass(frozen=True)
class OutcomeSummary:
    """The closing lines of a demo: fleet status before/after and the halted campaigns."""

    status: pl.DataFrame  # status, before, after (fleet-wide)
    halted: pl.DataFrame  # region, summary


def read_outcome_summary(conn: duckdb.DuckDBPyConnection) -> OutcomeSummary:
    """Read the fleet-wide before/after counts and the halted regions from the report tables."""
    counts = conn.table("status_before_after").pl().filter(pl.col("region") == "all")
    wide = (
        pl.DataFrame({"status": [s for s in STATUS_ORDER if s in set(counts["status"])]})
        .join(_phase(counts, "before"), on="status", how="left")
        .join(_phase(counts, "after"), on="status", how="left")
        .fill_null(0)
    )
    campaign = conn.table("campaign_report").pl()
    return OutcomeSummary(
        wide, campaign.filter(pl.col("campaign") == "halted").select("region", "summary")
    )


def _phase(counts: pl.DataFrame, phase: str) -> pl.DataFrame:
    return counts.filter(pl.col("phase") == phase).select("status", pl.col("devices").alias(phase))
