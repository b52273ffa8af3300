"""Reports for analysts: charts, report tables and the analyst queries, on a real warehouse."""

import base64
import itertools
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

import dagster as dg
import duckdb
import polars as pl
import pytest

from sentinel_assets import reports, svg, warehouse
from sentinel_assets.contracts import ASSET_CONTRACTS
from sentinel_assets.defs.assets import REPORT_GROUP
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.ingest import ingest_file
from sentinel_assets.telemetry.simulate import SimulationPlan, simulate
from sentinel_assets.validation import check_contract

REGIONS = ("af-south", "eu-west")  # with the default biases af-south halts, eu-west runs
DEVICES = 2_000
REPORT_TABLES = (
    "failure_clusters",
    "failure_telemetry",
    "triage_queue",
    "campaign_report",
    "status_before_after",
)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory, definitions: dg.Definitions
) -> tuple[Path, list[dg.ExecuteInProcessResult]]:
    """The fleet of two regions and the reports, materialized into a private data folder."""
    home = tmp_path_factory.mktemp("sentinel")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SENTINEL_HOME", str(home))
        env.setenv("SENTINEL_DEVICES_PER_REGION", str(DEVICES))
        from sentinel_assets.defs.resources import build_resources

        results = []
        with dg.DagsterInstance.ephemeral() as instance:
            for region in REGIONS:
                results.append(
                    definitions.resolve_job_def("fleet_refresh").execute_in_process(
                        partition_key=region, instance=instance, resources=build_resources(home)
                    )
                )
            results.append(
                definitions.resolve_job_def("regional_report").execute_in_process(
                    instance=instance, resources=build_resources(home)
                )
            )
            materialize_timeseries(definitions, home, instance)
    return home, results


def materialize_timeseries(
    definitions: dg.Definitions, home: Path, instance: dg.DagsterInstance
) -> None:
    """One simulated day of a dozen devices through the time-series and star-schema jobs, for
    the analyst queries that read them (their runs' checks are tested elsewhere)."""
    from sentinel_assets.defs.resources import build_resources

    plan = SimulationPlan(days=1, devices_per_region=12, readings_per_day=24, regions=REGIONS[1:])
    for path in simulate(home / "landing", plan):
        ingest_file(path, home / "lake")
    day = (plan.as_of - timedelta(days=1)).date().isoformat()
    for job, partition in [
        ("telemetry_timeseries_refresh", lake.partition_key(day, REGIONS[1])),
        ("star_schema_rebuild", None),
    ]:
        run = definitions.resolve_job_def(job).execute_in_process(
            partition_key=partition, instance=instance, resources=build_resources(home)
        )
        assert run.success, job


@pytest.fixture
def conn(pipeline):
    home, _ = pipeline
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        yield connection


pytestmark = pytest.mark.slow


# --- the pipeline's new assets and checks ------------------------------------------------


def test_every_run_passes_every_check_including_the_new_ones(pipeline):
    _, results = pipeline
    checked = set()
    for result in results:
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert all(e.passed for e in evaluations), [
            e.asset_check_key for e in evaluations if not e.passed
        ]
        checked |= {e.asset_check_key.to_user_string() for e in evaluations}
    assert {
        "recovery_outcomes:contract",
        "recovery_outcomes:outcomes_cover_the_fleet",
        "campaign_status:contract",
        "recovery_decisions:halt_holds_pending_updates",
        *(f"{table}:contract" for table in REPORT_TABLES),
    } <= checked


def test_report_tables_meet_their_contracts(conn):
    for table in REPORT_TABLES:
        frame = conn.table(table).pl()
        assert frame.height > 0, table
        report = check_contract(frame, ASSET_CONTRACTS[table])
        assert report.passed, (table, report.failure_cases)


def test_outcome_metadata_counts_before_and_after(pipeline):
    _, results = pipeline
    [event] = [
        e
        for e in results[0].get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("recovery_outcomes")
    ]
    metadata = event.materialization.metadata
    before, after = metadata["status_before"].value, metadata["status_after"].value
    assert set(before) == {"success", "partial", "failed", "pending"}
    assert sum(before.values()) == sum(after.values()) == metadata["devices"].value
    assert after["held"] > 0  # af-south's campaign is halted


def test_the_before_after_report_adds_up_per_region_and_in_total(conn):
    totals = conn.sql(
        "SELECT region, phase, sum(devices) AS devices FROM status_before_after GROUP BY ALL"
    ).pl()
    fleet = dict(conn.sql("SELECT region, count(*) FROM sanitized_fleet GROUP BY ALL").fetchall())
    fleet["all"] = sum(fleet.values())
    for region, phase, devices in totals.iter_rows():
        assert devices == fleet[region], (region, phase)


def test_the_campaign_report_names_the_halted_region_and_the_numbers_behind_it(conn):
    report = conn.table("campaign_report").pl()
    campaigns = dict(report.select("region", "campaign").iter_rows())
    assert campaigns == {"af-south": "halted", "eu-west": "running"}
    halted = report.filter(pl.col("region") == "af-south").row(0, named=True)
    assert halted["failure_rate"] >= halted["abort_failure_rate"]
    assert halted["attempted"] >= halted["abort_min_attempted"]
    [(pending,)] = conn.sql(
        "SELECT count(*) FROM sanitized_fleet WHERE region = 'af-south' AND "
        "update_status = 'pending'"
    ).fetchall()
    assert halted["held_devices"] >= pending > 0
    assert f"{halted['failures']} of {halted['attempted']} attempted failed" in halted["summary"]


def test_failure_clusters_rank_and_share_within_each_region(conn):
    clusters = conn.table("failure_clusters").pl()
    shares = clusters.group_by("region").agg(pl.col("share_of_region_failures").sum())
    assert shares["share_of_region_failures"].to_list() == pytest.approx([1.0] * len(REGIONS))
    top = clusters.filter(pl.col("cluster_rank") == 1)
    most = clusters.group_by("region").agg(pl.col("failures").max())
    assert top.join(most, on=["region", "failures"]).height == top.height
    # DENSE_RANK leaves no gaps: its ranks run 1..number of distinct rates.
    ranks = clusters["fleet_rate_rank"].unique().sort().to_list()
    assert ranks == list(range(1, clusters["failure_rate"].n_unique() + 1))


def test_the_triage_queue_counts_every_quarantined_record_and_triaged_device(conn):
    queue = conn.table("triage_queue").pl()
    sizes = queue.group_by("region", "source").agg(pl.col("queue_records").first())
    quarantined = dict(
        conn.sql("SELECT partition_key, count(*) FROM quarantine GROUP BY 1").fetchall()
    )
    triaged = dict(
        conn.sql(
            "SELECT region, count(*) FROM recovery_decisions WHERE action = 'manual_triage' "
            "GROUP BY 1"
        ).fetchall()
    )
    for region, source, size in sizes.iter_rows():
        assert size == (quarantined if source == "quarantine" else triaged)[region]
    codes = set(queue["reason_code"])
    assert any(":" in code for code in codes)  # quarantine: column:rule
    assert "not_retriable" in codes  # recovery: the policy rule


def test_failure_telemetry_covers_every_device_once_per_measure(conn):
    telemetry = conn.table("failure_telemetry").pl()
    per_measure = telemetry.group_by("region", "measure").agg(pl.col("devices").sum())
    fleet = dict(conn.sql("SELECT region, count(*) FROM sanitized_fleet GROUP BY 1").fetchall())
    for region, _, devices in per_measure.iter_rows():
        assert devices == fleet[region]


# --- charts --------------------------------------------------------------------------------


def test_charts_are_written_to_the_data_folder_and_embedded_in_the_asset_page(pipeline):
    home, results = pipeline
    charts = {"failure_clusters": "failure_heatmap", "status_before_after": "status_before_after"}
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in results[-1].get_asset_materialization_events()
    }
    for asset, chart in charts.items():
        path = home / "reports" / f"{chart}.svg"
        document = ElementTree.fromstring(path.read_bytes())  # a well-formed SVG file
        assert document.tag == f"{SVG}svg"
        markdown = events[asset][chart].value
        assert markdown.startswith("![") and "(data:image/svg+xml;base64," in markdown
        embedded = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
        assert embedded == path.read_bytes()
        assert events[asset][f"{chart}_file"].value == str(path)
    assert not list((home / "reports").glob(".*.tmp"))


def _labels(document: ElementTree.Element) -> list[str]:
    return [t.text or "" for t in document.iter(f"{SVG}text")]


def _cells(document: ElementTree.Element) -> dict[str, str]:
    """Heatmap cell label -> its fill (each cell is a rect followed by its label)."""
    shapes = [e for e in document if e.tag in (f"{SVG}rect", f"{SVG}text")]
    return {
        label.text or "": cell.get("fill", "")
        for cell, label in itertools.pairwise(shapes)
        if cell.tag == f"{SVG}rect" and label.tag == f"{SVG}text" and cell.get("stroke") == "white"
    }


def test_the_heatmap_has_a_cell_per_region_and_model_darker_where_more_fail():
    rates = pl.DataFrame(
        {
            "region": ["eu-west", "eu-west", "us-east", "us-east"],
            "model": ["gw-100", "cam-x3", "gw-100", "cam-x3"],
            "failure_rate": [0.1, 0.4, 0.2, 0.05],
        }
    )
    chart = reports.failure_heatmap_svg(rates)
    assert (chart.media_type, chart.suffix) == ("image/svg+xml", ".svg")
    document = ElementTree.fromstring(chart.data)
    cells = _cells(document)
    assert sorted(cells) == ["10%", "20%", "40%", "5%"]
    by_rate = [cells[label] for label in ("5%", "10%", "20%", "40%")]
    darkness = [svg.luminance(fill) for fill in by_rate]
    assert darkness == sorted(darkness, reverse=True)  # more failures, darker cell
    assert {"eu-west", "us-east", "gw-100", "cam-x3"} <= set(_labels(document))


def test_the_heatmap_marks_a_model_a_region_does_not_have():
    rates = pl.DataFrame(
        {"region": ["eu-west", "eu-west", "us-east"], "model": ["gw-100", "cam-x3", "gw-100"]}
    ).with_columns(failure_rate=pl.Series([0.1, 0.4, 0.2]))
    cells = _cells(ElementTree.fromstring(reports.failure_heatmap_svg(rates).data))
    assert cells["-"] == reports.MISSING_FILL
    assert len(cells) == 4


def test_the_heatmap_of_a_fleet_without_failures_renders():
    rates = pl.DataFrame({"region": ["eu-west"], "model": ["gw-100"], "failure_rate": [0.0]})
    cells = _cells(ElementTree.fromstring(reports.failure_heatmap_svg(rates).data))
    assert cells == {"0%": svg.ramp(0.0)}


def test_the_status_chart_stacks_each_phase_in_proportion():
    counts = pl.DataFrame(
        {
            "phase": ["before", "before", "after", "after", "after"],
            "status": ["success", "failed", "success", "recovered", "still_failed"],
            "devices": [90, 10, 90, 8, 2],
        }
    )
    chart = reports.status_bars_svg(counts)
    document = ElementTree.fromstring(chart.data)
    segments = [
        (r.get("fill"), float(r.get("width", 0)))
        for r in document.iter(f"{SVG}rect")
        if float(r.get("height", 0)) == 34
    ]
    colors = reports.STATUS_COLORS
    assert [fill for fill, _ in segments] == [
        colors["success"], colors["failed"], colors["success"], colors["recovered"],
        colors["still_failed"],
    ]  # fmt: skip
    widths = [width for _, width in segments]
    assert widths[0] / widths[1] == pytest.approx(9, rel=0.01)
    assert sum(widths[:2]) == pytest.approx(sum(widths[2:]), rel=0.01)  # same fleet both bars
    labels = _labels(document)
    assert {"90", "10", "8"} <= set(labels) and "2" not in labels  # no number on a sliver
    assert {"success", "failed", "recovered", "still_failed"} <= set(labels)  # the legend
    markdown = reports.markdown_image(chart.data, "status", chart.media_type)
    assert markdown.startswith("![status](data:image/svg+xml;base64,")


def test_a_chart_file_is_replaced_whole(tmp_path):
    path = reports.write_chart(b"<svg>old</svg>", tmp_path / "reports" / "chart.svg")
    reports.write_chart(b"<svg>new</svg>", path)
    assert path.read_bytes() == b"<svg>new</svg>"
    assert [p.name for p in path.parent.iterdir()] == ["chart.svg"]


# --- the analyst queries -------------------------------------------------------------------


def test_every_analyst_query_documents_its_question_and_columns():
    queries = reports.analysis_queries()
    assert len(queries) >= 8
    for query in queries:
        assert query.question.endswith("?")
        assert query.columns and all(query.columns)
        assert query.sql.endswith(";")


def test_every_analyst_query_returns_rows_with_its_documented_columns(conn):
    for query in reports.analysis_queries():
        frame = conn.sql(query.sql).pl()
        assert frame.columns == list(query.columns), query.question
        assert frame.height > 0, query.question


def test_the_analyst_file_runs_whole_as_the_cli_would_read_it(conn):
    """All statements of the file in one go, comments included, as `duckdb < file` runs it."""
    text = warehouse.read_sql(reports.ANALYSIS_QUERIES_FILE)
    statements = [s for s in text.split(";\n") if s.strip() and not _only_comments(s)]
    assert len(statements) == len(reports.analysis_queries())
    for statement in statements:
        conn.execute(statement)


def _only_comments(sql: str) -> bool:
    return all(line.strip().startswith("--") or not line.strip() for line in sql.splitlines())


def duckdb_cli() -> str | None:
    """The `duckdb` command the dev extra installs next to this interpreter, else PATH's."""
    beside = Path(sys.executable).with_name("duckdb")
    return str(beside) if beside.exists() else shutil.which("duckdb")


@pytest.mark.skipif(duckdb_cli() is None, reason="no duckdb CLI (the dev extra installs one)")
def test_the_analyst_file_runs_unchanged_in_the_duckdb_cli(pipeline):
    """The CLI may be older than the Python package (the dev extra pins duckdb-cli 1.5): the
    warehouse's storage compatibility setting is what lets it open the file."""
    home, _ = pipeline
    sql = warehouse.read_sql(reports.ANALYSIS_QUERIES_FILE)
    run = subprocess.run(
        [duckdb_cli(), "-readonly", str(home / "warehouse.duckdb")],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "Error" not in run.stdout + run.stderr


def test_a_query_without_its_columns_line_is_refused():
    with pytest.raises(ValueError, match="no `-- columns:` line"):
        reports.analysis_queries("-- Q: How many?\nSELECT 1;\n")
    with pytest.raises(ValueError, match="does not end with ';'"):
        reports.analysis_queries("-- Q: How many?\n-- columns: n\nSELECT 1 AS n\n")


def test_the_outcome_summary_gives_the_demo_its_closing_lines(conn):
    summary = reports.read_outcome_summary(conn)
    assert summary.status.columns == ["status", "before", "after"]
    assert summary.status["before"].sum() == summary.status["after"].sum()
    assert summary.status.filter(pl.col("status") == "partial")["after"].to_list() == [0]
    assert summary.halted["region"].to_list() == ["af-south"]
    assert summary.halted["summary"][0].startswith("halted: ")


def tables_read_by(sql: str) -> set[str]:
    """The base tables a query reads, from DuckDB's own parse tree (its CTEs left out)."""
    with duckdb.connect() as conn:
        [(tree,)] = conn.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    parsed = json.loads(tree)
    assert not parsed["error"], parsed

    def walk(node, tables: set[str], ctes: set[str]) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE":
                tables.add(node["table_name"])
            for entry in node.get("cte_map", {}).get("map", []):
                ctes.add(entry["key"])
            for value in node.values():
                walk(value, tables, ctes)
        elif isinstance(node, list):
            for value in node:
                walk(value, tables, ctes)

    tables: set[str] = set()
    ctes: set[str] = set()
    walk(parsed, tables, ctes)
    return tables - ctes


def test_each_report_assets_deps_are_the_tables_its_sql_reads(definitions):
    graph = definitions.resolve_asset_graph()
    reports_group = [
        key for key in graph.get_all_asset_keys() if graph.get(key).group_name == REPORT_GROUP
    ]
    assert {key.to_user_string() for key in reports_group} == set(warehouse.REPORT_TABLES)
    for key in reports_group:
        name = key.to_user_string()
        deps = {parent.to_user_string() for parent in graph.get(key).parent_keys}
        assert deps == tables_read_by(warehouse.read_sql(f"{name}.sql")), name


def test_the_sql_parser_sees_through_ctes_and_joins():
    sql = "WITH a AS (SELECT 1 FROM quarantine) SELECT * FROM a JOIN sanitized_fleet USING (x)"
    assert tables_read_by(sql) == {"quarantine", "sanitized_fleet"}
