"""The reliability table: each scenario test records one row, and the run prints them all.

Rows are JSON files in one folder shared by the pytest process and its xdist workers
(`SENTINEL_RELIABILITY_ROWS`), so `make reliability` and `make test` (reduced size) print
the same table whichever worker ran a scenario. The size comes from `SENTINEL_RELIABILITY_SIZE`:
`reduced` (the default, inside `make test`) or `full` (`make reliability`).
"""

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ROWS_ENV = "SENTINEL_RELIABILITY_ROWS"
SIZE_ENV = "SENTINEL_RELIABILITY_SIZE"
COLUMNS = ("scenario", "runs", "faults injected", "survived", "records lost", "duplicates", "s")


def full_size() -> bool:
    """`make reliability` sets full; anything else is the reduced size `make test` runs."""
    return os.environ.get(SIZE_ENV, "reduced").strip().lower() == "full"


def sized(reduced: int, full: int) -> int:
    return full if full_size() else reduced


@dataclass
class ScenarioRow:
    """One scenario's figures; `survived` counts faults after which every invariant held."""

    scenario: str
    runs: int = 0
    faults: int = 0
    survived: int = 0
    records_lost: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def fault(self, survived: bool, lost: int = 0, duplicates: int = 0) -> None:
        """Count one injected fault and what it cost; the test asserts, the row reports."""
        self.faults += 1
        self.survived += int(survived)
        self.records_lost += lost
        self.duplicates += duplicates

    def as_cells(self) -> tuple[str, ...]:
        return (
            self.scenario,
            f"{self.runs}",
            f"{self.faults}",
            f"{self.survived}",
            f"{self.records_lost}",
            f"{self.duplicates}",
            f"{self.seconds:.1f}",
        )


STREAM_COLUMNS = (
    "stream fault",
    "published",
    "consumed",
    "events",
    "duplicates dropped",
    "dead letters",
    "lost",
    "twice in telemetry_events",
    "s",
)
STREAM_FOLDER = "stream"


@dataclass
class StreamRow:
    """One stream fault's accounting (`stream_helpers.StreamAccount`): lost and twice must be 0."""

    scenario: str
    published: int = 0
    consumed: int = 0
    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def record(self, account) -> None:
        for name in ("published", "consumed", "events", "duplicates", "dead_letters", "lost"):
            setattr(self, name, getattr(account, name))
        self.duplicated = account.duplicated

    def as_cells(self) -> tuple[str, ...]:
        figures = (
            self.published,
            self.consumed,
            self.events,
            self.duplicates,
            self.dead_letters,
            self.lost,
            self.duplicated,
        )
        return (self.scenario, *map(str, figures), f"{self.seconds:.1f}")


def rows_folder() -> Path | None:
    raw = os.environ.get(ROWS_ENV)
    return Path(raw) if raw else None


def save(row: ScenarioRow | StreamRow) -> None:
    folder = rows_folder()
    if folder is None:
        return
    if isinstance(row, StreamRow):
        folder = folder / STREAM_FOLDER
    row.seconds = time.perf_counter() - row.started
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in row.scenario)
    state = {k: v for k, v in asdict(row).items() if k != "started"}
    (folder / f"{name}.json").write_text(json.dumps(state))


def load(folder: Path) -> list[ScenarioRow]:
    rows = [ScenarioRow(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    return sorted(rows, key=lambda r: r.scenario)


def load_stream(folder: Path) -> list[StreamRow]:
    rows = [StreamRow(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    return sorted(rows, key=lambda r: r.scenario)


def markdown(rows: list, columns: tuple[str, ...] = COLUMNS) -> str:
    """The table as the README shows it."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row.as_cells()) + " |" for row in rows]
    return "\n".join(lines)


@pytest.fixture
def scenario(request: pytest.FixtureRequest):
    """A row for this scenario (named by the test's `reliability` marker), saved at the end
    whether the test passed or not, so a failed invariant still shows in the table."""
    marker = request.node.get_closest_marker("reliability")
    row = ScenarioRow(marker.args[0] if marker else request.node.name)
    yield row
    save(row)


@pytest.fixture
def stream_row(request: pytest.FixtureRequest):
    """A row of the stream table for this fault (the `reliability` marker names it)."""
    marker = request.node.get_closest_marker("reliability")
    row = StreamRow(marker.args[0] if marker else request.node.name)
    yield row
    save(row)


def pytest_configure(config: pytest.Config) -> None:
    """The controller picks the rows folder before workers start, so they inherit it."""
    if hasattr(config, "workerinput") or rows_folder() is not None:
        return
    os.environ[ROWS_ENV] = tempfile.mkdtemp(prefix="sentinel-reliability-")
    config._sentinel_reliability_owner = True  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    folder = rows_folder()
    if hasattr(config, "workerinput") or folder is None or not folder.is_dir():
        return
    rows, stream = load(folder), load_stream(folder / STREAM_FOLDER)
    if not rows and not stream:
        return
    size = "full" if full_size() else "reduced"
    terminalreporter.section(f"reliability ({size} size)")
    text = "\n\n".join(
        part
        for part in (
            markdown(rows) if rows else "",
            markdown(stream, STREAM_COLUMNS) if stream else "",
        )
        if part
    )
    terminalreporter.write_line(text)
    report = os.environ.get("SENTINEL_RELIABILITY_REPORT")
    if report:
        Path(report).write_text(text + "\n")
