"""Report rendering: PNG charts for the Dagster UI and the data folder, and analyst queries.

Charts are drawn on a bare matplotlib `Figure` with the Agg canvas: no pyplot, no global
state, no display needed, so parallel runs can render at once.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import polars as pl

from sentinel_assets import warehouse
from sentinel_assets.contracts import MODELS, OUTCOME_STATUSES, REGIONS, UPDATE_STATUSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
DPI = 110
LABEL_MIN_SHARE = 0.04


def _figure(width_in: float, height_in: float) -> Figure:
    """matplotlib is imported with the first chart: region runs, which draw none, start
    ~0.4 s faster without it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in))


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def failure_heatmap_png(rates: pl.DataFrame) -> bytes:
    """Region x model failure rate (columns region, model, failure_rate) as a heatmap."""
    regions = [r for r in REGIONS if r in set(rates["region"])]
    models = [m for m in MODELS if m in set(rates["model"])]
    grid = (
        pl.DataFrame({"region": regions})
        .join(pl.DataFrame({"model": models}), how="cross")
        .join(rates.select("region", "model", "failure_rate"), on=["region", "model"], how="left")
    )
    matrix = grid["failure_rate"].to_numpy().reshape(len(regions), len(models))
    figure = _figure(1.5 + 1.3 * len(models), 1.2 + 0.5 * len(regions))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="YlOrRd", vmin=0, aspect="auto")
    axes.set_xticks(range(len(models)), models)
    axes.set_yticks(range(len(regions)), regions)
    top = float(rates["failure_rate"].max() or 0.0)
    for (row, col), value in np.ndenumerate(matrix):
        missing = math.isnan(value)  # no device of that model in the region
        text = "-" if missing else f"{value:.0%}"
        dark = not missing and value > 0.6 * top
        axes.text(col, row, text, ha="center", va="center", color="white" if dark else "black")
    axes.set_title("Failed or partial share of devices, region x model")
    figure.colorbar(image, ax=axes, format=lambda value, _: f"{value:.0%}")
    return _png(figure)


def status_bars_png(
    counts: pl.DataFrame, title: str = "Fleet status before and after recovery"
) -> bytes:
    """Devices per status before and after recovery (columns phase, status, devices)."""
    statuses = [s for s in STATUS_ORDER if s in set(counts["status"])]
    figure = _figure(9, 3.2)
    axes = figure.subplots()
    phases = ["before", "after"]
    total = int(counts.filter(pl.col("phase") == "before")["devices"].sum())
    for phase_index, phase in enumerate(phases):
        of_phase = dict(
            counts.filter(pl.col("phase") == phase).select("status", "devices").iter_rows()
        )
        left = 0
        for status in statuses:
            devices = of_phase.get(status, 0)
            if not devices:
                continue
            axes.barh(phase_index, devices, left=left, color=STATUS_COLORS[status], label=status)
            if devices >= LABEL_MIN_SHARE * total:  # a number on a sliver is unreadable
                axes.text(
                    left + devices / 2,
                    phase_index,
                    f"{devices:,}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                )
            left += devices
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(
        unique.values(),
        unique.keys(),
        ncols=5,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        frameon=False,
    )
    axes.set_yticks(range(len(phases)), phases)
    axes.invert_yaxis()
    axes.set_xlabel("devices")
    axes.set_title(title)
    return _png(figure)


def write_png(png: bytes, path: Path) -> Path:
    """Replace a chart file atomically, so a reader never sees half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(png)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that embeds the PNG itself: the Dagster UI renders it on the asset page."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


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
