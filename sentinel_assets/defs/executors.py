"""Which executor runs a job's steps, chosen by SENTINEL_EXECUTOR when the code loads.

- `in_process` (default, the embedded profile): a region's steps one after another in the
  run's own process; parallelism comes from running regions side by side.
- `multiprocess`: one subprocess per step, for one big machine.
- `celery` (production): every step is a task on a Celery broker (Redis or RabbitMQ) and runs
  on whichever `dagster-celery worker` takes it, on as many machines as there are. Broker and
  result backend come from SENTINEL_CELERY_BROKER / SENTINEL_CELERY_BACKEND (Dagster `env:`).
  The workers need the same code, DAGSTER_HOME (the PostgreSQL instance) and data location.
"""

import os

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "celery")


class ExecutorConfigError(ValueError):
    pass


def selected_executor(env: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    env = dict(os.environ) if env is None else env
    name = env.get("SENTINEL_EXECUTOR", "in_process").strip() or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        missing = [
            v for v in ("SENTINEL_CELERY_BROKER", "SENTINEL_CELERY_BACKEND") if not env.get(v)
        ]
        if missing:
            raise ExecutorConfigError(
                f"SENTINEL_EXECUTOR=celery needs {' and '.join(missing)} set (e.g. "
                "redis://host:6379/0)."
            )
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {
                "broker": {"env": "SENTINEL_CELERY_BROKER"},
                "backend": {"env": "SENTINEL_CELERY_BACKEND"},
            },
            name="celery",
        )
    raise ExecutorConfigError(
        f"SENTINEL_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {name!r}."
    )
