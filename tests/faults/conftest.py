"""Fixtures for the fault matrix (docs/fault-matrix.md).

``sim``: a simulator with 4 markets, seeded from the test's seed, generating 150 messages/s.
``own_pg``: an embedded PostgreSQL of this test alone (module-shared folder, started per test), for the tests
that stop, freeze or lock the database; it is never the shared ``pg_server``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from kalshi_testing import embedded_server

from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.migrations import migrate
from kalshi_ws.simulator import Simulator

#: The fixed seed list of the CI matrix (each fault family runs one short schedule per seed).
SEEDS = [11, 23]


@pytest.fixture
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Simulator]:
    seed = getattr(request, "param", None) or 7
    async with Simulator(markets=4, seed=seed, rate=150.0, data_dir=tmp_path / "sim") as s:
        yield s


@pytest.fixture(scope="module")
def own_pg_server() -> Iterator[EmbeddedPostgres]:
    # Under /tmp/kalshi-test-faults-pg-*, not pytest's tmp folder (see embedded_server); default settings (fsync
    # and synchronous commit on): these tests crash the server and count what survived.
    with embedded_server("kalshi-test-faults-pg-", settings={}) as server:
        yield server


@pytest.fixture
def own_pg(own_pg_server: EmbeddedPostgres) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """(server, url of a fresh migrated database) on a server this test may stop, freeze or lock."""
    server = own_pg_server
    server.thaw()
    server.start()
    name = f"faults_{next(_counter)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")  # noqa: S608 - name is ours
        conn.execute(f"create database {name}")  # noqa: S608 - name is ours
    url = server.url(name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")  # the schema survives the crashes (stop -m immediate) these tests cause
    yield server, url
    server.thaw()
    server.start()


def _numbers() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_counter = _numbers()


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
