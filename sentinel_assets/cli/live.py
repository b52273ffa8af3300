"""The terminal side of `sentinel demo` progress: a live rich table on a terminal, plain
lines (one per change) when output is piped or in CI. Snapshots come from `progress`."""

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sentinel_assets.cli.instance import command_instance
from sentinel_assets.cli.progress import DemoProgress, RegionProgress, State
from sentinel_assets.cli.stale_runs import SlotWaitNotices
from sentinel_assets.warehouse import CATALOG_POOL

# Pools whose waiting steps are named (with the run holding the slot) after SLOT_WAIT_S.
POOLS = (CATALOG_POOL,)
SLOT_WAIT_S = 60.0
SLOT_WAIT_ENV = "SENTINEL_SLOT_WAIT_S"
STEP_WIDTH = len("status_before_after")  # the longest step name
STATE_STYLES = {
    State.QUEUED: "dim",
    State.RUNNING: "yellow",
    State.DONE: "green",
    State.FAILED: "bold red",
}


def wants_live_view(stream: object = sys.stdout) -> bool:
    """A live view needs a real terminal; CI logs and pipes get plain lines."""
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty and isatty())
    return terminal and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def _checks(progress: RegionProgress) -> str:
    return f"{progress.checks_passed} passed, {progress.checks_failed} failed"


def progress_line(progress: RegionProgress) -> str:
    """One plain line, e.g. `us-east running sanitization 12,000 rows 950 rows/s ...`."""
    parts = [progress.label, progress.state.value]
    if progress.step:
        parts.append(progress.step)
    if progress.state is not State.QUEUED:
        parts.append(f"{progress.rows:,} rows")
        parts.append(f"{progress.rows_per_second:,.0f} rows/s")
        parts.append(f"checks {_checks(progress)}")
    if progress.state in (State.DONE, State.FAILED):
        parts.append(f"in {progress.seconds:.1f} s")
        if progress.run_id:
            parts.append(f"run {progress.run_id[:8]}")
    if progress.failed_checks:
        parts.append(f"failed checks: {', '.join(progress.failed_checks)}")
    if progress.error:
        parts.append(progress.error)
    return " ".join(parts)


def progress_table(snapshot: Sequence[RegionProgress]) -> Table:
    """The live view: one row per region (and the report once it runs)."""
    table = Table(title="Sentinel runs (from the Dagster instance)", header_style="bold")
    # Fixed widths where values change length, so the table does not jump between polls.
    for column, justify, width in [
        ("region", "left", len("regional_report")),
        ("state", "left", len("running")),
        ("current step", "left", STEP_WIDTH),
        ("rows", "right", 9),
        ("rows/s", "right", 7),
        ("checks ok", "right", None),
        ("checks failed", "right", None),
        ("time", "right", 7),
        ("run", "left", 8),
    ]:
        table.add_column(column, justify=justify, min_width=width)
    for p in snapshot:
        started = p.state is not State.QUEUED
        table.add_row(
            p.label,
            f"[{STATE_STYLES[p.state]}]{p.state.value}[/]",
            p.error or p.step or "-",
            f"{p.rows:,}" if started else "-",
            f"{p.rows_per_second:,.0f}" if started else "-",
            str(p.checks_passed),
            f"[red]{p.checks_failed}[/]" if p.checks_failed else "0",
            f"{p.seconds:.1f} s" if started else "-",
            p.run_id[:8] or "-",
        )
    return table


class PlainPrinter:
    """Prints a region's line whenever its state or its step changes."""

    def __init__(self, console: Console):
        self.console = console
        self.seen: dict[str, tuple[State, str]] = {}

    def __call__(self, snapshot: Sequence[RegionProgress]) -> None:
        for progress in snapshot:
            key = (progress.state, progress.step)
            if self.seen.get(progress.label, (State.QUEUED, "")) != key:
                self.seen[progress.label] = key
                self.console.print(progress_line(progress), highlight=False, markup=False)


@contextlib.contextmanager
def watch_demo(
    console: Console,
    demo_id: str,
    labels: Sequence[str],
    *,
    live: bool,
    slot_wait_s: float = SLOT_WAIT_S,
) -> Iterator[tuple[Callable[[], None], DemoProgress]]:
    """Yield `(poll, reader)`: each `poll()` reads the instance once and redraws the live
    table or prints changed lines; a last poll runs on exit so the final states show. A step
    waiting longer than `slot_wait_s` for a pool slot is named with the run that holds it."""
    with command_instance() as instance:
        reader = DemoProgress(instance, demo_id, labels)
        printer = PlainPrinter(console)
        unreadable: set[str] = set()
        slot_notices = SlotWaitNotices(instance, POOLS, slot_wait_s)

        def snapshot() -> list[RegionProgress] | None:
            try:
                for sentence in slot_notices():
                    console.print(sentence, markup=False, soft_wrap=True)
                return reader.snapshot(time.time())
            except Exception as error:  # a busy SQLite file must not stop the runs
                if type(error).__name__ not in unreadable:  # say it once, not every poll
                    unreadable.add(type(error).__name__)
                    note = f"progress not readable now ({type(error).__name__}: {error})"
                    console.print(note, markup=False)
                return None

        if not live:

            def poll_plain() -> None:
                if (shown := snapshot()) is not None:
                    printer(shown)

            yield poll_plain, reader
            poll_plain()
            return

        with Live(console=console, auto_refresh=False, transient=False) as view:

            def poll_live() -> None:
                if (shown := snapshot()) is not None:
                    view.update(progress_table(shown), refresh=True)

            poll_live()
            yield poll_live, reader
            poll_live()
