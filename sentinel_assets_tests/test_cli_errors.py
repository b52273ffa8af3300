"""A user's mistake in the environment or the data folder ends `sentinel` with one sentence
and exit status 2, before any worker starts or anything is written: never a traceback."""

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from sentinel_assets import paths
from sentinel_assets.cli.main import main
from sentinel_assets.cli.orchestrate import step_failure_reason


def sentinel(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, (captured.out + captured.err).strip()


def one_sentence(output: str) -> str:
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("sentinel: ")
    return output


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A read-only file system (root can mount one); writes fail with EROFS even for root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command: cannot make a read-only file system here")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root): read-only case not run")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_sentinel_home_that_is_a_file_is_named_in_one_sentence(tmp_path, monkeypatch, capsys):
    home = tmp_path / "not-a-folder"
    home.write_text("")
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    status, output = sentinel(capsys, "demo", "--regions", "eu-west")
    assert status == 2
    assert f"SENTINEL_HOME points at {home}, which is a file" in one_sentence(output)


def test_a_read_only_data_folder_is_named_in_one_sentence(read_only_folder, monkeypatch, capsys):
    monkeypatch.setenv("SENTINEL_HOME", str(read_only_folder / "data"))
    for argv in (("demo",), ("ingest", str(read_only_folder)), ("timeseries",)):
        status, output = sentinel(capsys, *argv)
        assert status == 2
        assert "read-only file system; set SENTINEL_HOME to a writable folder" in one_sentence(
            output
        )


def test_an_instance_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(blocker / "dagster"))
    status, output = sentinel(capsys, "demo")
    assert status == 2
    assert f"Cannot write to {blocker / 'dagster'} (DAGSTER_HOME)" in one_sentence(output)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SENTINEL_DEVICES_PER_REGION", "abc", "SENTINEL_DEVICES_PER_REGION must be an integer"),
        ("SENTINEL_FLEET_SOURCE", "kafka", "Invalid settings: source Input should be"),
        ("SENTINEL_EXECUTOR", "dask", "SENTINEL_EXECUTOR must be one of"),
    ],
)
def test_a_bad_setting_in_the_environment_is_one_sentence_before_any_run(
    tmp_path, monkeypatch, capsys, variable, value, message
):
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "data"))
    monkeypatch.setenv(variable, value)
    status, output = sentinel(capsys, "demo", "--regions", "eu-west")
    assert status == 2
    assert message in one_sentence(output)
    assert not paths.tables_root(tmp_path / "data").exists()


def test_a_missing_folder_is_created_and_a_writable_one_accepted(tmp_path):
    folder = tmp_path / "a" / "b"
    paths.require_writable_folder(folder, "SENTINEL_HOME")
    paths.require_writable_folder(folder, "SENTINEL_HOME")
    assert folder.is_dir()
    assert list(folder.iterdir()) == []  # the write probe is gone


def test_a_failed_region_says_which_step_failed_and_why():
    @dg.asset
    def raw_fleet() -> int:
        raise dg.Failure(description="unknown region 'mars-1'\nmore detail")

    result = dg.materialize([raw_fleet], raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert step_failure_reason(failure) == "raw_fleet: unknown region 'mars-1'"
