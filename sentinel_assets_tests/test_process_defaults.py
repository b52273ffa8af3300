"""Process-wide defaults that importing Sentinel sets (before Polars is loaded)."""

from __future__ import annotations

import os
import subprocess
import sys

from sentinel_assets import POLARS_ALLOCATOR_DEFAULT, POLARS_ALLOCATOR_ENV

_PROBE = (
    "import os, sys; import sentinel_assets; "
    f"print(os.environ.get({POLARS_ALLOCATOR_ENV!r})); print('polars' in sys.modules)"
)


def _probe(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_importing_sentinel_keeps_freed_memory_of_polars_for_a_minute_before_polars_loads():
    env = {k: v for k, v in os.environ.items() if k != POLARS_ALLOCATOR_ENV}
    assert _probe(env) == [POLARS_ALLOCATOR_DEFAULT, "False"]
    assert "dirty_decay_ms:60000" in POLARS_ALLOCATOR_DEFAULT


def test_an_allocator_setting_in_the_environment_wins():
    env = {**os.environ, POLARS_ALLOCATOR_ENV: "dirty_decay_ms:1000"}
    assert _probe(env) == ["dirty_decay_ms:1000", "False"]
