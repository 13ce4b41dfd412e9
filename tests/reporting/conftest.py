"""The reporting tests' shared recording (``recording``, session scope) and its ground truth.

The simulator (seeded, driven step by step), the production WebSocket client and the production
:class:`~kalshi_store.recorder.Recorder` write one session into a fresh migrated database, with a sequence gap (a
dropped order book delta, repaired by a snapshot) and a dropped connection (reconnect, new snapshots) in the
middle; then the depth summaries are computed like the ingest flow does. See ``reporting_recording.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reporting_recording import Recording, fresh_database, record  # noqa: E402


@pytest.fixture(scope="session")
def recorded_db(pg_url: str, _template_db: str) -> Iterator[str]:
    """A migrated database for the shared recording (kept for the whole run)."""
    yield from fresh_database(pg_url, _template_db)


@pytest.fixture(scope="session")
def recording(recorded_db: str, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    started = time.monotonic()
    result = asyncio.run(record(recorded_db, tmp_path_factory.mktemp("reporting")))
    assert time.monotonic() - started < 60, "the shared recording must stay fast"
    return result
