"""Peak memory of a process tree: RSS summed over a process and all its descendants.

Sampled from `/proc` (Linux) every `interval` seconds in a background thread, so no extra
dependency is needed; `psutil` is used instead when it is installed (macOS, Windows). A sum of
RSS counts pages shared between processes (libraries, copy-on-write) once per process, so it
over-states the tree's real footprint a little: an upper bound, which is what a memory budget
needs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

try:  # optional: /proc covers Linux without it
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC = Path("/proc")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended between listing and reading
            continue
        # Field 2 (comm) may hold spaces and parentheses: parse after its closing ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _rss_bytes(pid: int) -> int:
    try:
        fields = (PROC / str(pid) / "statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * PAGE_SIZE


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS in bytes summed over `root` and its descendants, number of processes)."""
    if psutil is not None:
        try:
            proc = psutil.Process(root)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total, len(procs)
    pids = tree_pids(root)
    return sum(_rss_bytes(pid) for pid in pids), len(pids)


def tree_pids(root: int) -> list[int]:
    children = _children_map()
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, ()))
    return pids


def high_water_bytes(pid: int) -> int:
    """The kernel's peak RSS of one process so far (`VmHWM`): no spike between samples is
    missed. 0 where /proc does not tell."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def available() -> bool:
    return psutil is not None or (PROC / "self" / "statm").exists()


class PeakRSS:
    """Context manager sampling the RSS of a process tree; `.peak` is the largest sum seen."""

    def __init__(self, root: int | None = None, interval: float = 0.05) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self._high_water: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        rss, count = tree_rss(self.root)
        if rss > self.peak:
            self.peak, self.peak_processes = rss, count
        if (PROC / "self" / "status").exists():
            for pid in tree_pids(self.root):
                self._high_water[pid] = max(self._high_water.get(pid, 0), high_water_bytes(pid))

    @property
    def high_water_gib(self) -> float:
        """Every process's own peak RSS (kernel `VmHWM`), summed: exact for one process,
        an upper bound for several (their peaks need not coincide); misses nothing that
        happened between two samples, unlike `peak`."""
        return sum(self._high_water.values()) / 2**30

    def __enter__(self) -> PeakRSS:
        if available():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def peak_gib(self) -> float:
        return self.peak / 2**30


def machine() -> dict[str, object]:
    """What a reader needs to compare numbers across machines."""
    import platform

    info: dict[str, object] = {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        info["memory_gib"] = round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        if psutil is not None:
            info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for module in ("polars", "duckdb", "dagster", "pandera", "numpy", "pandas"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info
