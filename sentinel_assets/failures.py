"""Which errors are worth another attempt: a locked file, a dropped connection or a busy or
full disk may be gone seconds later; a bad value, an unknown region or a broken contract will
fail the same way every time, so retrying it only delays the message."""

import errno

import duckdb
from pydantic import ValidationError

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.ENOSPC,
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
    }
)
# How far down an exception's causes to look (a wrapped lock error is still a lock error).
CAUSE_DEPTH = 5


def _is_transient_itself(error: BaseException) -> bool:
    if isinstance(error, duckdb.IOException):
        return "lock" in str(error).lower()
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS


def is_transient(error: BaseException) -> bool:
    """True for errors another attempt may not meet: locks, connections, busy or full disks."""
    seen: BaseException | None = error
    for _ in range(CAUSE_DEPTH):
        if seen is None:
            return False
        if _is_transient_itself(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def settings_problem(error: ValidationError) -> str:
    """Pydantic's findings in one line each, named by field (`recovery.max_retries Input
    should be less than or equal to 10`), without its input dumps and links."""
    lines = [
        f"{'.'.join(str(part) for part in found['loc']) or 'settings'} {found['msg']}"
        for found in error.errors()
    ]
    return "Invalid settings: " + "; ".join(lines)


# How a full disk reads in the errors that reach a run's failure: the OS's ENOSPC text, and
# SQLite's (the Dagster instance) and DuckDB's own words for it.
DISK_FULL_WORDS: tuple[str, ...] = (
    "no space left on device",
    "database or disk is full",
    "disk is full",
    "not enough space",
)


def reads_as_disk_full(message: str) -> bool:
    """True for an error text that says the disk ran full."""
    lowered = message.lower()
    return any(words in lowered for words in DISK_FULL_WORDS)
