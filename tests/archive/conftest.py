"""Fixtures for the archive tier and the read side: a real recording from the simulator in a database of its own.

Archiving drops partitions, so every test gets its own database and recording (``recorded``, about 2 s), made by the
reporting tests' recorder (``tests/reporting/reporting_recording.py``: the simulator, the production client and
Recorder, a sequence gap and a dropped connection in the middle) and kept with the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "reporting"))

from reporting_recording import Recording, fresh_database, record  # noqa: E402


@pytest.fixture
def recorded(pg_url: str, _template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """A recorded session in a database of this test's own (archiving changes it)."""
    databases = fresh_database(pg_url, _template_db)
    url = next(databases)
    try:
        yield asyncio.run(record(url, tmp_path_factory.mktemp("recording")))
    finally:
        databases.close()
