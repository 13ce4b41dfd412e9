"""Packing finished day partitions of the order book deltas (docs/storage.md, "Partitions, retention, packing").

While a session records, every book of it grows at once, so the primary-key pages of its day partition of
``kalshi.orderbook_delta_rows`` split half full and settle about 70 % full (about 106 B a delta with the heap). A
day nothing writes to any more is packed once by rebuilding its primary key full (fillfactor 100: about 97 B a
delta). The rules live in sql/050: ``kalshi.delta_days_to_pack`` lists the day partitions to pack (before a
given day, holding rows, not packed yet, no running session started that day) and ``kalshi.compact_delta_partitions``
packs them (for one day, or all).

:func:`compact_finished_days` packs one day per transaction, for the archive flow and ``kalshi-ingest db archive``,
the days being those before ``today`` and before the database's UTC date. The marker of a packed partition is its
primary key's ``fillfactor = 100`` (set by the transaction that rebuilds it, so the two never disagree): a packed day
is never packed again; a day partition dropped and recreated (an archived day refilled by late rows) has a fresh key
and is packed again when finished.

Rebuilding blocks the day's readers and writers for the rebuild (seconds for a day of millions of deltas); a
day whose locks are not granted within :data:`LOCK_TIMEOUT` is left for the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

__all__ = ["LOCK_TIMEOUT", "Compacted", "compact_day", "compact_finished_days", "days_to_compact"]

log = logging.getLogger(__name__)

#: How long a rebuild waits for the day's readers and writers before the day is left for the next run.
LOCK_TIMEOUT = "10s"

# The finished days are before ``today`` and before the database's UTC date; sql/050 chooses among them.
_DAYS = "select day from kalshi.delta_days_to_pack(least(%(today)s, (now() at time zone 'UTC')::date))"
_PACK = ("select partition_name, bytes_before, bytes_after "
         "from kalshi.compact_delta_partitions(least(%(today)s, (now() at time zone 'UTC')::date), %(day)s)")


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
    """The finished days whose delta partition holds rows and is not packed yet (``kalshi.delta_days_to_pack``),
    oldest first (``skip``: days left alone, e.g. those archived in the same run). An empty partition is not packed
    (nor marked): rows that arrive later (a replay) are packed when they are there."""
    skipped = set(skip)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(_DAYS, {"today": _today(today)})
        return [day for (day,) in rows if day not in skipped]


def compact_day(db_url: str, day: date, *, today: date | None = None) -> Compacted | None:
    """Pack the delta partition of ``day`` if it is finished and not packed yet (``kalshi.compact_delta_partitions``
    checks again under its lock, so two runs never pack a day twice); ``None`` when there is nothing to do.
    Raises :class:`psycopg.errors.LockNotAvailable` when the day's readers or writers keep it longer than
    :data:`LOCK_TIMEOUT` (nothing changed)."""
    started = time.monotonic()
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        found = conn.execute(_PACK, {"today": _today(today), "day": day}).fetchone()
    if found is None:
        return None
    partition, before, after = found
    return Compacted(day, partition, before, after, time.monotonic() - started)


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
