"""Schema migrations: the numbered files in ``sql/`` applied in order, each exactly once.

A migration file is ``sql/NNN_name.sql`` in the repository, installed as ``kalshi_store/sql/NNN_name.sql`` (package
data, byte for byte). :func:`migrate` applies the files the database has not seen yet, in
number order, each in its own transaction, while holding a PostgreSQL advisory lock so two processes starting
together never apply the same file twice. Each applied file is recorded in ``kalshi.schema_migrations`` with a
SHA-256 checksum of its bytes; a released file must never change, so if an applied file's checksum differs,
:func:`migrate` refuses to run (:class:`MigrationChecksumError`) instead of leaving the database and the code
disagreeing. After the files, :func:`migrate` creates the day partitions for the coming week
(``kalshi.ensure_partitions``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from .dberrors import connect_error

__all__ = [
    "SQL_DIR",
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "applied_migrations",
    "discover",
    "migrate",
]

log = logging.getLogger(__name__)


def _sql_dir() -> Path:
    """``kalshi_store/sql/`` in an installed wheel (package data), else the checkout's ``sql/`` (editable)."""
    here = Path(__file__).resolve().parent
    packaged = here / "sql"
    return packaged if packaged.is_dir() else here.parent / "sql"


#: The migration files: ``kalshi_store/sql/`` when installed from the wheel, the repository's ``sql/`` in a
#: checkout (the same bytes: pyproject.toml maps ``sql/`` to the package data ``kalshi_store/sql``).
SQL_DIR: Final = _sql_dir()

#: Advisory lock key held while migrating (an arbitrary constant: "kalshi_m" in ASCII).
LOCK_KEY: Final = 0x6B616C7368695F6D
_NAME: Final = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migrations could not be applied (bad file name, duplicate number, SQL error)."""


class MigrationChecksumError(MigrationError):
    """A migration file that was already applied has changed since."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Every migration file in ``sql_dir``, in version order.

    A folder that is missing or holds no migration is an error (:class:`MigrationError`): an installation
    without its migrations must never report a database as migrated.
    """
    if not sql_dir.is_dir():
        raise MigrationError(f"migration folder {sql_dir} does not exist: this installation of kalshi-ingest is "
                             "incomplete (reinstall the package)")
    found: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files must be named NNN_lower_case_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path} and {found[version].path} have the same number {version:03d}")
        found[version] = Migration(version, path.name, path, path.read_bytes())
    if not found:
        raise MigrationError(f"no migration files (NNN_name.sql) in {sql_dir}: this installation of kalshi-ingest "
                             "is incomplete (reinstall the package)")
    return [found[v] for v in sorted(found)]


_CREATE_LEDGER: Final = b"""
create schema if not exists kalshi;
create table if not exists kalshi.schema_migrations (
    version     integer primary key,
    name        text not null,
    checksum    text not null,
    applied_at  timestamptz not null default now()
);
comment on table kalshi.schema_migrations is 'Migration files (sql/NNN_*.sql) applied to this database, with the SHA-256 of each.';
"""


def applied_migrations(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    """``version -> (name, checksum)`` of the migrations recorded in the database."""
    rows = conn.execute("select version, name, checksum from kalshi.schema_migrations").fetchall()
    return {version: (name, checksum) for version, name, checksum in rows}


def migrate(url: str, *, sql_dir: Path = SQL_DIR, partition_days_ahead: int = 7,
            before: int | None = None) -> list[str]:
    """Apply pending migrations to the database at ``url``; returns the names of the files applied. With ``before``,
    only those numbered below it (a database as an earlier release left it: migration tests, benchmarks).

    Safe to run concurrently and repeatedly (a second run applies nothing). Raises
    :class:`MigrationChecksumError` if a file applied earlier has changed.
    """
    migrations = [m for m in discover(sql_dir) if before is None or m.version < before]
    applied_now: list[str] = []
    try:
        connection = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:  # typed and redacted: libpq may echo the URL, password included
        raise connect_error(exc, url) from None
    with connection as conn:
        conn.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            with conn.transaction():
                conn.execute(_CREATE_LEDGER)
            applied = applied_migrations(conn)
            for migration in migrations:
                if migration.version in applied:
                    name, checksum = applied[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationChecksumError(
                            f"{migration.path} was changed after it was applied to this database as {name} "
                            f"(recorded sha256 {checksum[:12]}..., file now {migration.checksum[:12]}...). "
                            "Released migrations must never change: restore the file and put the change in a new "
                            "numbered file."
                        )
                    continue
                log.debug("applying migration %s", migration.name)
                try:
                    with conn.transaction():
                        conn.execute(migration.sql)
                        conn.execute(
                            "insert into kalshi.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.path}: {exc}") from exc
                applied_now.append(migration.name)
            has_partitions = conn.execute(
                "select to_regprocedure('kalshi.ensure_partitions(integer, integer)') is not null"
            ).fetchone()
            if has_partitions and has_partitions[0]:
                with conn.transaction():
                    conn.execute("select kalshi.ensure_partitions(%s)", (partition_days_ahead,))
        finally:
            if not conn.closed:
                conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
    if applied_now:  # one line in the run's log, not one per file
        log.info("applied %d migration%s: %s", len(applied_now), "" if len(applied_now) == 1 else "s",
                 applied_now[0] if len(applied_now) == 1 else f"{applied_now[0]} .. {applied_now[-1]}")
    return applied_now
