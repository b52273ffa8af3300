"""Run one benchmark subject in a fresh interpreter and measure it from outside.

Every subject (the Dagster pipeline, the in-process limit, the seed-style script) runs as a
child process, so its wall time includes interpreter start-up and imports, as a user running
the command would see, and its peak memory is the RSS summed over the child and everything it
starts (the pipeline's worker processes included), sampled from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procmem import PeakRSS

REPO = Path(__file__).resolve().parent.parent
N_REGIONS = 8
SIZES: dict[str, int] = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


def size_label(devices: int) -> str:
    for label, value in SIZES.items():
        if value == devices:
            return label
    return f"{devices:_}"


def parse_size(text: str) -> int:
    """`10k`, `1m`, `250_000` -> devices."""
    text = text.strip().lower()
    if text in SIZES:
        return SIZES[text]
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    return int(float(number.replace("_", "")) * scale)


@dataclass
class Measurement:
    """What one child process did: seconds, peak memory of its tree, and its own report."""

    subject: str
    devices: int
    seconds: float
    peak_rss_gib: float
    peak_processes: int
    returncode: int
    result: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    # Launch to exit of the child, interpreter start-up and imports included.
    process_seconds: float = float("nan")
    # 1-minute load average before and after: other work on the machine shows up here.
    load_before: float = float("nan")
    load_after: float = float("nan")
    # Each process's own kernel peak (VmHWM), summed: no spike between samples is missed
    # (exact for a one-process subject, an upper bound for several).
    peak_hwm_gib: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result.get("success", True) is not False

    @property
    def us_per_device(self) -> float:
        return self.seconds / self.devices * 1e6 if self.devices else float("nan")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["us_per_device"] = self.us_per_device
        data["ok"] = self.ok
        return data


def emit_result(result: dict[str, Any], path: Path | None) -> None:
    """A subject's result as JSON: to `path` (`--json`), else to stdout, where `run_child`
    reads it."""
    text = json.dumps(result, indent=2, default=str)
    if path:
        path.write_text(text)
    else:
        print(text)


def targets_table(targets: dict[str, dict[str, Any]]) -> list[str]:
    """The Markdown rows of a benchmark's targets: limit, measured, met."""
    lines = ["| target | limit | measured | met |", "|---|---:|---:|---|"]
    for name, t in targets.items():
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {name} | {t['limit']} | {t['measured']:.2f} | {met} |")
    return lines


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # The package and `benchmarks` import from the checkout even without an editable install.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_child(
    subject: str,
    devices: int,
    args: list[str],
    workdir: Path,
    env: dict[str, str] | None = None,
    result_json: Path | None = None,
    timeout: float | None = None,
    python: str = sys.executable,
) -> Measurement:
    """Run `python <args>` to completion; wall time from launch to the child's own
    `finished_at` (when it reports one, so its after-the-fact bookkeeping is not counted)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{subject}.log"
    load_before = os.getloadavg()[0]
    launched = time.time()
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [python, *args],
            cwd=REPO,
            env=_child_env(env or {}),
            stdout=log if result_json else subprocess.PIPE,
            stderr=log,
            text=True,
        )
        # Sampling starts once the child exists: a sampler started before it took its first
        # sample of this (parent) process, whose RSS then counted as the subject's peak.
        with PeakRSS(root=child.pid, interval=0.1) as memory:
            stdout, _ = child.communicate(timeout=timeout)
            exited = time.time()
    result: dict[str, Any] = {}
    try:
        text = result_json.read_text() if result_json else stdout
        result = json.loads(text) if text else {}
    except (OSError, json.JSONDecodeError):
        result = {}
    finished = result.get("finished_at", exited)
    tail = "" if child.returncode == 0 else "".join(log_path.read_text().splitlines(True)[-30:])
    return Measurement(
        subject=subject,
        devices=devices,
        seconds=finished - launched,
        peak_rss_gib=memory.peak_gib,
        peak_processes=memory.peak_processes,
        returncode=child.returncode,
        result=result,
        log=tail,
        process_seconds=exited - launched,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        peak_hwm_gib=memory.high_water_gib,
    )


def fleet_env(home: Path, devices: int) -> dict[str, str]:
    """A subject's data folder, its instance folder inside it, and its fleet per region."""
    return {
        "SENTINEL_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SENTINEL_DEVICES_PER_REGION": str(devices // N_REGIONS),
    }


def measure_pipeline(
    devices: int, parallel: int, workdir: Path, keep: bool = False, runs: str = "auto"
) -> Measurement:
    """The Dagster pipeline, as `sentinel demo --parallel N --runs R` runs it, on a fresh
    data folder (`pipeline_home`)."""
    home = pipeline_home(workdir, devices, parallel, runs)
    shutil.rmtree(home, ignore_errors=True)
    out = home.with_suffix(".json")
    env = fleet_env(home, devices)
    args = ["-m", "benchmarks.pipeline", "--parallel", str(parallel), "--json", str(out)]
    args += ["--runs", runs]
    if "SENTINEL_BENCH_INSTANCE_YAML" in os.environ:  # another dagster.yaml than the repo's
        args += ["--instance-yaml", os.environ["SENTINEL_BENCH_INSTANCE_YAML"]]
    measurement = run_child(f"pipeline-p{parallel}", devices, args, workdir, env, out)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return measurement


def measure_demo(devices: int, workdir: Path) -> Measurement:
    """`sentinel demo` itself (simulator as source), from launch until the process exits, on
    a fresh data folder with the repo's dagster.yaml (what `make instance` installs)."""
    home = workdir / f"demo-{size_label(devices)}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster").mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")
    env = fleet_env(home, devices) | {"SENTINEL_FLEET_SOURCE": "simulator"}
    measurement = run_child(
        "demo", devices, ["-m", "sentinel_assets.cli.main", "demo"], workdir, env
    )
    shutil.rmtree(home, ignore_errors=True)
    return measurement


def pipeline_home(workdir: Path, devices: int, parallel: int, runs: str) -> Path:
    return workdir / f"pipeline-{size_label(devices)}-p{parallel}-{runs}"


def measure_limit(devices: int, workdir: Path, keep: bool = False) -> Measurement:
    """The in-process floor: same domain functions and table writes, nothing else."""
    home = workdir / f"limit-{size_label(devices)}"
    shutil.rmtree(home, ignore_errors=True)
    out = workdir / f"limit-{size_label(devices)}.json"
    args = ["-m", "benchmarks.limit", "--devices-per-region", str(devices // N_REGIONS)]
    args += ["--home", str(home), "--json", str(out)]
    measurement = run_child("limit", devices, args, workdir, None, out)
    # The floor is the work itself: the child's interpreter start and imports (Dagster's
    # config classes among them) are not part of it.
    measurement.seconds = measurement.result.get("seconds", measurement.seconds)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return measurement


def measure_seed_style(devices: int, workdir: Path, python: str = sys.executable) -> Measurement:
    """The seed's row-wise pandas + SQLite approach (`benchmarks/seed_style.py`), run by
    `python` (an interpreter with pandas, see `seed_python` in `run.py`)."""
    home = workdir / f"seed-{size_label(devices)}"
    shutil.rmtree(home, ignore_errors=True)
    args = ["-m", "benchmarks.seed_style", "--devices", str(devices), "--workdir", str(home)]
    measurement = run_child("seed_style", devices, args, workdir, python=python)
    measurement.seconds = measurement.result.get("total", measurement.seconds)  # as for limit
    shutil.rmtree(home, ignore_errors=True)
    return measurement
