"""Helpers for the ``small_disk`` fixture: fill it up and free it."""

from __future__ import annotations

import os
from pathlib import Path


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(disk: Path, *, leave: int, name: str = "ballast") -> Path:
    """Write a file on ``disk`` that leaves about ``leave`` bytes free; delete it to free the space."""
    ballast = disk / name
    size = max(0, free_bytes(disk) - leave)
    with ballast.open("wb") as handle:
        handle.write(b"\0" * size)
    return ballast
