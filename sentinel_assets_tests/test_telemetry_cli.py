"""`sentinel simulate` and `sentinel ingest`: one line per file, one sentence per mistake."""

from __future__ import annotations

import duckdb

from sentinel_assets.cli.main import main
from sentinel_assets.telemetry import lake


def test_simulate_then_ingest_prints_a_line_per_file_and_fills_the_catalog(sentinel_home, capsys):
    assert (
        main(
            [
                "simulate",
                "--days",
                "1",
                "--devices-per-region",
                "50",
                "--regions",
                "us-east,eu-west",
            ]
        )
        == 0
    )
    assert "Wrote 2 landing file(s)" in capsys.readouterr().out
    assert main(["ingest", str(sentinel_home / "landing")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "accepted" in line and "duplicates" in line]
    assert len(lines) == 3  # two files and the total
    manifests = lake.read_manifests(sentinel_home / "lake")
    assert all(f"{m['accepted']:,} accepted" in out for m in manifests)
    with duckdb.connect(str(sentinel_home / "warehouse.duckdb"), read_only=True) as conn:
        [(events,)] = conn.sql("SELECT count(*) FROM telemetry_events").fetchall()
    assert events == sum(m["accepted"] for m in manifests) > 0


def test_a_file_ingested_before_is_skipped_unless_forced(sentinel_home, capsys):
    main(["simulate", "--days", "1", "--devices-per-region", "20", "--regions", "us-east"])
    folder = str(sentinel_home / "landing")
    main(["ingest", folder])
    before = lake.scan_events(sentinel_home / "lake").collect().height
    capsys.readouterr()
    assert main(["ingest", folder]) == 0
    assert "already ingested" in capsys.readouterr().out
    assert main(["ingest", "--force", folder]) == 0
    assert lake.scan_events(sentinel_home / "lake").collect().height == before


def test_ingesting_into_a_lake_of_an_earlier_id_scheme_says_it_migrated_it(sentinel_home, capsys):
    main(["simulate", "--days", "1", "--devices-per-region", "20", "--regions", "us-east"])
    main(["ingest", str(sentinel_home / "landing")])
    (sentinel_home / "lake" / lake.LAKE_META).unlink()  # as a lake written before it existed
    parts = len(lake.event_files(sentinel_home / "lake"))
    capsys.readouterr()
    assert main(["ingest", "--force", str(sentinel_home / "landing")]) == 0
    assert f"record ids of {parts:,} lake part(s) recomputed" in capsys.readouterr().out
    assert main(["ingest", "--force", str(sentinel_home / "landing")]) == 0
    assert "recomputed" not in capsys.readouterr().out


def test_mistakes_get_one_sentence_and_exit_code_2(sentinel_home, capsys):
    assert main(["ingest", str(sentinel_home / "nowhere")]) == 2
    assert main(["simulate", "--days", "0"]) == 2
    assert main(["simulate", "--regions", "mars-north"]) == 2
    assert main(["simulate", "--as-of", "2026-11-01T00:00:00"]) == 2
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sentinel:")]
    assert len(errors) == 4 and not any("Traceback" in line for line in errors)
