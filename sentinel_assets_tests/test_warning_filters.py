"""The suite's warning filters (pyproject.toml): our own deprecated calls fail it, and only the
named third-party deprecations are let through."""

import warnings

import pytest


def deprecation(message: str, module: str) -> None:
    warnings.warn_explicit(message, DeprecationWarning, f"{module}.py", 1, module=module)


def test_a_deprecated_call_of_our_own_fails_the_suite():
    with pytest.raises(DeprecationWarning, match="old way"):
        deprecation("old way", "sentinel_assets.defs.jobs")


@pytest.mark.parametrize(
    ("message", "module"),
    [
        (
            "InitResourceContext.dagster_run is deprecated and will be removed",
            "dagster._core.execution.context.init",
        ),
        (
            "Using variable_values and operation_name arguments of execute and subscribe "
            "methods is deprecated.",
            "gql.client",
        ),
    ],
)
def test_a_named_third_party_deprecation_is_let_through(message: str, module: str):
    with warnings.catch_warnings(record=True) as caught:
        deprecation(message, module)  # no error raised
    assert caught == []  # and ignored, not merely recorded


def test_the_same_message_from_our_code_still_fails():
    with pytest.raises(DeprecationWarning):
        deprecation("InitResourceContext.dagster_run is deprecated", "sentinel_assets.defs")
