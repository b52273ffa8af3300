"""The production profile is chosen by environment alone, and bad values get one sentence."""

import dagster as dg
import pytest

from sentinel_assets import production
from sentinel_assets.defs import delta_io, executors
from sentinel_assets.defs.resources import RegionShardIOManager, build_resources


def test_the_embedded_default_needs_no_variable(tmp_path, monkeypatch):
    for name in ("SENTINEL_EXECUTOR", "SENTINEL_STORAGE", "SENTINEL_PUBLISH_REPORTS"):
        monkeypatch.delenv(name, raising=False)
    assert executors.selected_executor() is dg.in_process_executor
    assert isinstance(build_resources(tmp_path)["io_manager"], RegionShardIOManager)
    assert not production.publishing_enabled()


def test_delta_storage_is_selected_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTINEL_STORAGE", "delta")
    monkeypatch.setenv("SENTINEL_DELTA_ROOT", "s3://fleet/sentinel")
    resources = build_resources(tmp_path)
    assert isinstance(resources["io_manager"], delta_io.DeltaShardIOManager)
    assert resources["catalog"].delta_root == "s3://fleet/sentinel"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SENTINEL_EXECUTOR": "dask"},
         "SENTINEL_EXECUTOR must be one of in_process, multiprocess, celery, not 'dask'."),
        ({"SENTINEL_EXECUTOR": "celery"},
         "SENTINEL_EXECUTOR=celery needs SENTINEL_CELERY_BROKER and SENTINEL_CELERY_BACKEND "
         "set (e.g. redis://host:6379/0)."),
    ],
)  # fmt: skip
def test_a_bad_executor_setting_is_one_sentence(env, message):
    with pytest.raises(executors.ExecutorConfigError) as error:
        executors.selected_executor(env)
    assert str(error.value) == message


def test_a_bad_storage_or_switch_is_one_sentence(monkeypatch):
    monkeypatch.setenv("SENTINEL_STORAGE", "iceberg")
    with pytest.raises(ValueError, match=r"^SENTINEL_STORAGE must be one of parquet, delta, not"):
        delta_io.selected_storage()
    with pytest.raises(production.ProductionConfigError, match="must be 1/true or 0/false"):
        production.publishing_enabled({"SENTINEL_PUBLISH_REPORTS": "maybe"})
    with pytest.raises(production.ProductionConfigError, match="PGSSLMODE must be one of"):
        production.check_instance_env(
            dict.fromkeys(production.INSTANCE_ENV, "5432") | {"PGSSLMODE": "on"}
        )


def test_the_celery_executor_reads_its_broker_from_the_environment():
    executor = executors.selected_executor(
        {"SENTINEL_EXECUTOR": "celery", "SENTINEL_CELERY_BROKER": "redis://h:6379/0",
         "SENTINEL_CELERY_BACKEND": "redis://h:6379/1"}
    )  # fmt: skip
    assert executor.name == "celery"
