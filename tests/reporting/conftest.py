"""The reporting tests' shared recording (``recording``, session scope) and its ground truth.

The simulator (seeded, driven step by step), the production WebSocket client and the production
:class:`~kalshi_store.recorder.Recorder` write one session into a fresh migrated database, with a sequence gap (a
dropped order book delta, repaired by a snapshot) and a dropped connection (reconnect, new snapshots) in the
middle; then the depth summaries are computed like the ingest flow does. See ``reporting_recording.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).parent))

from reporting_recording import Recording, record  # noqa: E402

_counter = itertools.count(1)


def _database_url(server_url: str, database: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = database
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def recorded_db(pg_url: str, _template_db: str) -> Iterator[str]:
    """A migrated database for the shared recording (kept for the whole run)."""
    name = f"reporting_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {} strategy file_copy").format(
            sql.Identifier(name), sql.Identifier(_template_db)))
    try:
        yield _database_url(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def recording(recorded_db: str, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    started = time.monotonic()
    result = asyncio.run(record(recorded_db, tmp_path_factory.mktemp("reporting")))
    assert time.monotonic() - started < 60, "the shared recording must stay fast"
    return result
