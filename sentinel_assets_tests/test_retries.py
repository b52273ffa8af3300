"""Only transient errors are retried; a permanent one (bad settings, an unknown region, a
bug) fails its step once, with its own message, and the run is not launched again."""

import errno
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from sentinel_assets.defs.failures import retry_transient_only
from sentinel_assets.defs.resources import build_resources
from sentinel_assets.failures import is_transient

pytestmark = pytest.mark.slow
WILL_RETRY = "dagster/will_retry"
FAILURE_REASON = "dagster/failure_reason"
REPO = Path(__file__).parents[1]
NO_WAIT = dg.RetryPolicy(max_retries=2, delay=0)


@pytest.fixture
def retrying_instance(tmp_path: Path):
    """An instance with the project's `run_retries` (from its dagster.yaml)."""
    project = yaml.safe_load((REPO / "dagster.yaml").read_text())
    overrides = {"run_retries": project["run_retries"]}
    assert overrides["run_retries"]["enabled"]
    (tmp_path / "instance").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "instance"), overrides=overrides) as inst:
        yield inst


def lock_error() -> duckdb.IOException:
    return duckdb.IOException('Could not set lock on file "warehouse.duckdb": Conflicting lock')


@pytest.mark.parametrize(
    "error",
    [
        lock_error(),
        ConnectionResetError("peer went away"),
        TimeoutError("read timed out"),
        OSError(errno.EAGAIN, "Resource temporarily unavailable"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_locks_connections_and_busy_disks_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("unknown region 'mars-1'"),
        KeyError("battery_pct"),
        duckdb.IOException("No files found that match the pattern"),
        OSError(errno.EROFS, "Read-only file system"),
        PermissionError(errno.EACCES, "Permission denied"),
    ],
)
def test_bad_values_missing_files_and_read_only_disks_are_permanent(error):
    assert not is_transient(error)


def test_a_lock_error_wrapped_in_another_error_is_still_transient():
    try:
        try:
            raise lock_error()
        except duckdb.IOException as inner:
            raise RuntimeError("could not refresh the catalog") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def attempts_of(result: dg.ExecuteInProcessResult, step: str) -> tuple[int, int]:
    """(retries, failures) of one step."""
    events = [e for e in result.all_events if e.step_key == step]
    retries = sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in events)
    return retries, sum(e.is_step_failure for e in events)


def test_a_transient_error_is_retried_and_a_permanent_one_fails_once():
    calls = {"flaky": 0, "broken": 0}

    @dg.asset(retry_policy=NO_WAIT)
    @retry_transient_only
    def flaky() -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise lock_error()
        return 1

    @dg.asset(retry_policy=NO_WAIT)
    @retry_transient_only
    def broken() -> int:
        calls["broken"] += 1
        raise ValueError("threshold must be a number")

    result = dg.materialize([flaky, broken], raise_on_error=False)
    assert attempts_of(result, "flaky") == (1, 0)
    assert attempts_of(result, "broken") == (0, 1)
    assert calls == {"flaky": 2, "broken": 1}
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "ValueError: threshold must be a number" in failure.event_specific_data.error.message


def run_fleet(instance, home: Path, **kwargs) -> dg.ExecuteInProcessResult:
    from sentinel_assets.definitions import defs

    return (
        defs()
        .resolve_job_def("fleet_refresh")
        .execute_in_process(
            instance=instance, resources=build_resources(home), raise_on_error=False, **kwargs
        )
    )


def failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.is_step_failure]


def test_invalid_settings_fail_the_first_step_once_and_the_run_is_not_relaunched(
    retrying_instance, tmp_path
):
    config = {"resources": {"settings": {"config": {"chaos": {"rates": {"null": 1.5}}}}}}
    result = run_fleet(retrying_instance, tmp_path, partition_key="eu-west", run_config=config)
    assert not result.success
    assert failed_steps(result) == ["raw_fleet"]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.message
    assert "Invalid settings: chaos.rates.null Input should be less than or equal to 1" in message
    run = retrying_instance.get_run_by_id(result.run_id)
    # The auto re-execution daemon relaunches a failed run unless it failed in a step.
    assert run.tags[FAILURE_REASON] == "STEP_FAILURE"
    assert run.tags[WILL_RETRY] == "false"
    assert not (tmp_path / "tables").exists()


def test_an_unknown_region_fails_once_and_is_never_retried(retrying_instance, tmp_path):
    # The Launchpad or GraphQL can start a run with any partition tag.
    result = run_fleet(retrying_instance, tmp_path, tags={"dagster/partition": "mars-1"})
    assert not result.success
    assert attempts_of(result, "raw_fleet") == (0, 1)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "unknown region 'mars-1'" in failure.event_specific_data.error.message
    assert retrying_instance.get_run_by_id(result.run_id).tags[WILL_RETRY] == "false"
