"""Steps retry only what may pass on another attempt (`failures.is_transient`); a permanent
error, or settings that failed validation, fail the step once with the error's own message,
so neither the step's RetryPolicy nor the instance's `run_retries` repeats it."""

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from sentinel_assets.failures import is_transient
from sentinel_assets.warehouse import storage_problem


def _refuse_invalid_settings(kwargs: dict[str, Any]) -> None:
    for value in kwargs.values():
        problem = getattr(value, "invalid_settings", None)
        if problem:
            raise dg.Failure(description=problem, allow_retries=False)


def _classified(error: Exception) -> Exception:
    """The error itself when it is transient, else a Failure that is never retried."""
    if isinstance(error, dg.Failure | dg.RetryRequested) or is_transient(error):
        return error
    broken = storage_problem(error)
    return dg.Failure(
        description=str(broken) if broken else f"{type(error).__name__}: {error}",
        metadata={"retried": False, "why": "a permanent error fails the same way every time"},
        allow_retries=False,
    )


@contextmanager
def _permanent_errors_fail_once() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        classified = _classified(error)
        if classified is error:
            raise
        raise classified from error


def retry_transient_only(compute: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an asset's body (a function or a generator) so only transient errors reach its
    RetryPolicy."""
    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            _refuse_invalid_settings(kwargs)
            with _permanent_errors_fail_once():
                yield from compute(*args, **kwargs)

        return steps

    @functools.wraps(compute)
    def step(*args: Any, **kwargs: Any) -> Any:
        _refuse_invalid_settings(kwargs)
        with _permanent_errors_fail_once():
            return compute(*args, **kwargs)

    return step
