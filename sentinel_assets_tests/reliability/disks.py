"""Small disks for the full and read-only disk scenarios (4 and 7d): a tmpfs mounted as
root, remounted read-only, filled to the last MiB."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextmanager
def tmpfs(folder: Path, megabytes: int, scenario: str) -> Iterator[Path]:
    """`folder` as a tmpfs of `megabytes` MiB; `scenario` skips with one line without root."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(f"{scenario} mounts a small tmpfs: it needs root")
    try:
        mount("-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder))
    except subprocess.CalledProcessError as error:
        pytest.skip(f"{scenario} cannot mount a tmpfs here: {error.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def fill(disk: Path, leave_mb: float) -> Path:
    """A filler file that leaves `leave_mb` MiB free."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    room = shutil.disk_usage(disk).free - int(leave_mb * 2**20)
    with open(filler, "wb") as handle:
        handle.truncate(0)
        for _ in range(max(0, room) // 2**20):
            handle.write(b"\0" * 2**20)
        handle.write(b"\0" * (max(0, room) % 2**20))
    return filler
