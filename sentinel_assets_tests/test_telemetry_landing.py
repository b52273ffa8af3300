"""The landing zone: identity by content, the `*.tmp` convention, claiming and moving aside."""

from __future__ import annotations

import os

from sentinel_assets.telemetry import landing
from sentinel_assets_tests.telemetry_helpers import json_line, v2, write_lines


def test_identity_is_the_content_not_the_name_or_the_time(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [json_line(v2())])
    b = write_lines(tmp_path / "b.jsonl", [json_line(v2())])
    os.utime(b, (0, 0))
    assert landing.content_hash(a) == landing.content_hash(b)
    write_lines(a, [json_line(v2(retry_count=2))])
    assert landing.content_hash(a) != landing.content_hash(b)
    assert len(landing.batch_id(landing.content_hash(a))) == 16


def test_files_still_being_written_are_not_complete(tmp_path):
    for name in ["done.csv", "sub/done.jsonl.gz", "x.csv.tmp", "y.jsonl.part", ".hidden.csv"]:
        write_lines(tmp_path / name, ["{}"], header=False)
    write_lines(tmp_path / "_batches" / "abc" / "old.csv", ["{}"], header=False)
    found = [p.relative_to(tmp_path).as_posix() for p in landing.complete_files(tmp_path)]
    assert found == ["done.csv", "sub/done.jsonl.gz"]


def test_a_file_renamed_from_tmp_becomes_complete(tmp_path):
    partial = write_lines(tmp_path / "slow.jsonl.tmp", [json_line(v2())])
    assert landing.complete_files(tmp_path) == []
    with partial.open("ab") as handle:  # the writer is still appending
        handle.write(json_line(v2(retry_count=3)).encode() + b"\n")
    assert landing.complete_files(tmp_path) == []
    partial.rename(tmp_path / "slow.jsonl")
    assert landing.complete_files(tmp_path) == [tmp_path / "slow.jsonl"]


def test_claiming_moves_a_file_into_its_batch_and_a_redrop_is_absorbed(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", [json_line(v2())])
    digest = landing.content_hash(first)
    claimed = landing.claim(first, tmp_path, digest)
    assert claimed == tmp_path / "_batches" / digest[:16] / "a.jsonl" and not first.exists()
    again = write_lines(tmp_path / "copy.jsonl", [json_line(v2())])
    assert landing.claim(again, tmp_path, digest) == claimed and not again.exists()
    assert landing.claimed_batches(tmp_path) == [digest[:16]]
    assert landing.batch_file(tmp_path, digest[:16]) == claimed


def test_an_unreadable_file_is_moved_aside(tmp_path):
    bad = write_lines(tmp_path / "bad.jsonl", [b"\x00\x00"])
    digest = landing.content_hash(bad)
    claimed = landing.claim(bad, tmp_path, digest)
    aside = landing.move_aside(claimed, tmp_path, digest[:16])
    assert aside == tmp_path / "_rejected" / digest[:16] / "bad.jsonl" and aside.exists()
    assert landing.claimed_batches(tmp_path) == []


def test_the_telemetry_package_knows_nothing_of_dagster():
    import ast
    from pathlib import Path

    import sentinel_assets.telemetry as package

    imported = set()
    for module in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "polars" in imported and "dagster" not in imported


def test_a_backlog_is_claimed_a_bounded_number_of_files_at_a_time(tmp_path):
    for n in range(5):
        write_lines(tmp_path / f"f{n}.jsonl", [json_line(v2(retry_count=n))])
    first = landing.scan(tmp_path, known=set(), limit=3)
    assert len(first.new_batches) == 3 and len(landing.complete_files(tmp_path)) == 2
    known = {batch for batch, _ in first.new_batches}
    second = landing.scan(tmp_path, known=known, limit=3)
    assert len(second.new_batches) == 2 and landing.complete_files(tmp_path) == []
