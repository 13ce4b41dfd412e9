"""Storage tests: make the frame helpers (``storage_frames``) importable under pytest's importlib mode, and a
real small disk that fills up (``small_disk``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

#: Size of the ``small_disk`` tmpfs.
SMALL_DISK = "2m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs mounted for this test (writes past it fail with ENOSPC), unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0700", "tmpfs", str(mount)],  # noqa: S603, S607
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SMALL_DISK} tmpfs for the full-disk test (needs root and mount permission): "
                    f"{done.stderr.strip() or f'exit status {done.returncode}'}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:  # noqa: S603, S607
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)  # noqa: S603, S607

