"""Root fixtures: a real PostgreSQL for every test that needs one.

Fixtures
--------
``pg_server`` (session)
    The :class:`kalshi_store.embedded.EmbeddedPostgres` started once per test run and pytest-xdist worker in a
    temporary folder (listening on 127.0.0.1, a free port). Stopped at the end of the run. Do not stop it in a
    test; tests that need an outage start their own server (see ``tests/storage/test_outage.py``).
``pg_url`` (session)
    URL of that server's ``postgres`` database (a superuser connection). Use it to create databases or roles.
``db_url`` (function)
    URL of a fresh database for this test only, with every migration in ``sql/`` applied (schema ``kalshi``,
    partitions, ``kalshi_reader`` role). Created in a few tens of milliseconds by ``CREATE DATABASE ... TEMPLATE``
    from a template migrated once per run; dropped after the test.
``empty_db_url`` (function)
    Like ``db_url`` but with nothing applied (for migration tests).

``private_pg`` (module)
    An :class:`~kalshi_store.embedded.EmbeddedPostgres` of its own for one test module, for tests that stop
    (``stop("immediate")``), freeze (``freeze()``/``thaw()``) and restart the database. Create databases in it with
    ``private_pg.create_database(name)`` and apply the schema with ``kalshi_store.migrations.migrate(url)``.

Set ``KALSHI_TEST_DATABASE_URL`` to a superuser URL of an existing server to use it instead of the embedded one
(``pg_server`` is then skipped for the tests that ask for it).
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.migrations import migrate

# Shared test helpers (tests/kalshi_testing.py) are imported as ``kalshi_testing``.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from kalshi_testing import embedded_server  # noqa: E402

_TEMPLATE = "kalshi_test_template"
_counter = itertools.count(1)


def _database_url(server_url: str, database: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = database
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    if os.environ.get("KALSHI_TEST_DATABASE_URL"):
        pytest.skip("KALSHI_TEST_DATABASE_URL is set: no embedded server")
    with embedded_server() as server:
        yield server


@pytest.fixture(scope="module")
def private_pg() -> Iterator[EmbeddedPostgres]:
    with embedded_server("kalshi-test-private-pg-") as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(request: pytest.FixtureRequest) -> str:
    external = os.environ.get("KALSHI_TEST_DATABASE_URL")
    if external:
        return external
    server: EmbeddedPostgres = request.getfixturevalue("pg_server")
    return server.url()


@pytest.fixture(scope="session")
def _template_db(pg_url: str) -> str:
    name = f"{_TEMPLATE}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    migrate(_database_url(pg_url, name))
    return name


def _create_database(pg_url: str, template: str | None) -> Iterator[str]:
    name = f"test_{os.getpid()}_{next(_counter)}"
    statement = sql.SQL("create database {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} template {} strategy file_copy").format(statement, sql.Identifier(template))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(statement)
    try:
        yield _database_url(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(pg_url: str, _template_db: str) -> Iterator[str]:
    yield from _create_database(pg_url, _template_db)


@pytest.fixture
def empty_db_url(pg_url: str) -> Iterator[str]:
    yield from _create_database(pg_url, None)
