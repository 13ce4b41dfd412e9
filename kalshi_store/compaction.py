"""Packing finished day partitions of the order book deltas (docs/storage.md, "Partitions, retention, packing").

While a session records, every book of it grows at once, so the primary-key pages of its day partition of
``kalshi.orderbook_delta_rows`` split half full and settle about 70 % full (about 106 B a delta with the heap). A
day nothing writes to any more is packed once by rebuilding its primary key full (fillfactor 100: about 97 B a
delta), what ``kalshi.compact_delta_partitions`` (sql/050) does for every finished day at once.

:func:`compact_finished_days` does it one day at a time, for the archive flow and ``kalshi-ingest db archive``: a
day partition is *finished* when its day is over (before ``today`` and before the database's UTC date) and no
running session started that day (the day of a session's partition). The marker of a packed partition is its
primary key's ``fillfactor = 100`` (set by the same transaction that rebuilds it, so the two never disagree, and
set by ``compact_delta_partitions`` as well): a packed day is never packed again; a day partition dropped and
recreated (an archived day refilled by late rows) has a fresh key and is packed again when finished.

Rebuilding blocks the day's readers and writers for the rebuild (seconds for a day of millions of deltas); a
day whose locks are not granted within :data:`LOCK_TIMEOUT` is left for the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["LOCK_TIMEOUT", "Compacted", "compact_day", "compact_finished_days", "days_to_compact"]

log = logging.getLogger(__name__)

#: How long a rebuild waits for the day's readers and writers before the day is left for the next run.
LOCK_TIMEOUT = "10s"

# The day partitions of the delta rows with their primary key, whether it is packed (the marker) and whether a
# running session writes to the day.
_PARTITIONS = """
select to_date(right(c.relname, 8), 'YYYYMMDD') as day, c.relname, ic.relname as index_name,
       coalesce('fillfactor=100' = any(ic.reloptions), false) as packed,
       exists (select from kalshi.sessions s
               where s.status = 'running'
                 and (s.started_at at time zone 'UTC')::date = to_date(right(c.relname, 8), 'YYYYMMDD')) as running
from pg_inherits h
join pg_class c on c.oid = h.inhrelid
join pg_index i on i.indrelid = c.oid and i.indisprimary
join pg_class ic on ic.oid = i.indexrelid
where h.inhparent = 'kalshi.orderbook_delta_rows'::regclass
  and c.relname ~ '^orderbook_delta_rows_p[0-9]{8}$'
  and to_date(right(c.relname, 8), 'YYYYMMDD') < least(%(today)s, (now() at time zone 'UTC')::date)
"""


@dataclass(frozen=True)
class Compacted:
    """One day partition of ``kalshi.orderbook_delta_rows`` whose primary key was packed."""

    day: date
    partition: str
    bytes_before: int
    bytes_after: int
    seconds: float


def _today(today: date | None) -> date:
    return today or datetime.now(UTC).date()


def days_to_compact(db_url: str, *, today: date | None = None, skip: Iterable[date] = ()) -> list[date]:
    """The finished days whose delta partition holds rows and is not packed yet, oldest first (``skip``: days left
    alone, e.g. those archived in the same run). An empty partition is not packed (nor marked): rows that arrive
    later (a replay) are packed when they are there."""
    skipped = set(skip)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(_PARTITIONS, {"today": _today(today)}).fetchall()
        return sorted(day for day, name, _index, packed, running in rows
                      if not packed and not running and day not in skipped and _has_rows(conn, name))


def _has_rows(conn: psycopg.Connection[Any], partition: str) -> bool:
    row = conn.execute(sql.SQL("select exists (select from {})").format(sql.Identifier("kalshi", partition))
                       ).fetchone()
    return bool(row and row[0])


def compact_day(db_url: str, day: date, *, today: date | None = None) -> Compacted | None:
    """Pack the delta partition of ``day`` if it is finished and not packed yet (checked again under the lock
    runs of this function take, so two runs never pack a day twice); ``None`` when there is nothing to do.
    Raises :class:`psycopg.errors.LockNotAvailable` when the day's readers or writers keep it longer than
    :data:`LOCK_TIMEOUT` (nothing changed)."""
    started = time.monotonic()
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        conn.execute("select pg_advisory_xact_lock(hashtext('kalshi.compact_delta_partitions'))")
        found: Any = conn.execute(_PARTITIONS + " and to_date(right(c.relname, 8), 'YYYYMMDD') = %(day)s",
                                  {"today": _today(today), "day": day}).fetchone()
        if found is None or found[3] or found[4] or not _has_rows(conn, found[1]):
            return None
        _day, partition, index_name, _packed, _running = found
        index = sql.Identifier("kalshi", index_name)
        before = _index_bytes(conn, index_name)
        # The marker and the rebuild commit together. A late row (a replay) only splits a page.
        conn.execute(sql.SQL("alter index {} set (fillfactor = 100)").format(index))
        conn.execute(sql.SQL("reindex index {}").format(index))
        after = _index_bytes(conn, index_name)
    return Compacted(day, f"kalshi.{partition}", before, after, time.monotonic() - started)


def _index_bytes(conn: psycopg.Connection[Any], index_name: str) -> int:
    row = conn.execute("select pg_relation_size(%s::regclass)", (f"kalshi.{index_name}",)).fetchone()
    assert row is not None
    return int(row[0])


def compact_finished_days(db_url: str, *, today: date | None = None, skip: Iterable[date] = ()) -> list[Compacted]:
    """Pack every finished, not yet packed day partition of the deltas (:func:`days_to_compact`), oldest first;
    what was packed. A day whose locks are not granted in time is logged and left for the next run."""
    done = []
    for day in days_to_compact(db_url, today=today, skip=skip):
        try:
            result = compact_day(db_url, day, today=today)
        except psycopg.errors.LockNotAvailable:
            log.warning("deltas of %s not packed: the partition stayed busy for %s; the next run tries again",
                        day, LOCK_TIMEOUT)
            continue
        if result is not None:
            done.append(result)
    return done
