"""Packing finished day partitions of the order book deltas, trades and ticker updates (docs/storage.md, "Partitions,
retention, packing").

While a session records, its B-tree pages fill in no particular order: every book of the session grows at once in
the key (book_key, seq) of ``kalshi.orderbook_delta_rows``, every market at once in those of ``kalshi.ticker_rows``
and in the market index of ``kalshi.trade_rows``, and the trade key is a random uuid. Pages split half full and settle
about 70-75 % full. A day nothing writes to any more is packed once by rebuilding every index of its day partitions
full (fillfactor 100). The rules live in SQL: ``kalshi.day_partitions_to_pack`` (sql/070) lists the indexes to pack
(day partitions of the three tables before a given day, holding rows, with an index not packed yet, no running
session started that day) and ``kalshi.compact_day_partitions`` packs them (for one day, or all). sql/050's
``delta_days_to_pack`` and ``compact_delta_partitions`` (the delta rows only) still work, over 070's.

:func:`compact_finished_days` packs one day per transaction, for the archive flow and ``kalshi-ingest db archive``,
the days being those before ``today`` and before the database's UTC date. The marker of a packed index is its
``fillfactor = 100`` (set by the transaction that rebuilds it, so the two never disagree): a packed day is never
packed again; a day partition dropped and recreated (an archived day refilled by late rows) has fresh indexes and is
packed again when finished.

One transaction per day, not per partition: a day is packed whole or not at all and is retried whole, and its
delta partition (by far the largest) dominates the time anyway. The cost: the locks of the day's partitions are held
until the day commits, so readers of the day's deltas also wait for the (smaller) trades and tickers rebuilds, and
a reader that reads two of the day's tables in one transaction can deadlock with the rebuild (PostgreSQL aborts one
of them; if it is the rebuild, nothing changed and the day is left for the next run, as on a lock timeout).
Rebuilding blocks the day's readers and writers for the rebuild (seconds for a day of millions of deltas); a day
whose locks are not granted within :data:`LOCK_TIMEOUT` is left for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

__all__ = ["LOCK_TIMEOUT", "Compacted", "compact_day", "compact_finished_days", "days_to_compact"]

log = logging.getLogger(__name__)

#: How long a rebuild waits for the day's readers and writers before the day is left for the next run.
LOCK_TIMEOUT = "10s"

# The finished days are before ``today`` and before the database's UTC date; sql/070 chooses among them.
_DAYS = ("select distinct day from kalshi.day_partitions_to_pack(least(%(today)s, (now() at time zone 'UTC')::date)) "
         "order by day")
_PACK = ("select day, table_name, partition_name, bytes_before, bytes_after, seconds "
         "from kalshi.compact_day_partitions(least(%(today)s, (now() at time zone 'UTC')::date), %(day)s)")


@dataclass(frozen=True)
class Compacted:
    """One day partition whose indexes were packed (``table``: ``kalshi.orderbook_delta_rows``,
    ``kalshi.trade_rows`` or ``kalshi.ticker_rows``); the bytes are those of all its indexes."""

    day: date
    partition: str
    bytes_before: int
    bytes_after: int
    seconds: float
    table: str = "kalshi.orderbook_delta_rows"


def _today(today: date | None) -> date:
    return today or datetime.now(UTC).date()


def days_to_compact(db_url: str, *, today: date | None = None, skip: Iterable[date] = ()) -> list[date]:
    """The finished days with a day partition of the deltas, trades or tickers that holds rows and is not packed yet
    (``kalshi.day_partitions_to_pack``), oldest first (``skip``: days left alone, e.g. those archived in the same
    run). An empty partition is not packed (nor marked): rows that arrive later (a replay) are packed when they are
    there."""
    skipped = set(skip)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(_DAYS, {"today": _today(today)})
        return [day for (day,) in rows if day not in skipped]


def compact_day(db_url: str, day: date, *, today: date | None = None) -> list[Compacted]:
    """Pack the day partitions of ``day`` (deltas, trades, tickers) that are finished and not packed yet, in one
    transaction (``kalshi.compact_day_partitions`` checks again under its lock, so two runs never pack a partition
    twice); what was packed, empty when there is nothing to do. Raises :class:`psycopg.errors.LockNotAvailable` when
    the day's readers or writers keep it longer than :data:`LOCK_TIMEOUT`, :class:`psycopg.errors.DeadlockDetected`
    when one of them waits for a partition the rebuild holds (nothing changed in either case)."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        rows = conn.execute(_PACK, {"today": _today(today), "day": day}).fetchall()
    return [Compacted(packed_day, partition, before, after, seconds, table)
            for packed_day, table, partition, before, after, seconds in rows]


def compact_finished_days(db_url: str, *, today: date | None = None, skip: Iterable[date] = ()) -> list[Compacted]:
    """Pack every finished day not packed yet (:func:`days_to_compact`), oldest first, one transaction per day; what
    was packed, one :class:`Compacted` per partition. A day whose locks are not granted in time is logged and left
    for the next run."""
    done = []
    for day in days_to_compact(db_url, today=today, skip=skip):
        try:
            done += compact_day(db_url, day, today=today)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            log.warning("%s not packed (%s): its partitions stayed busy; the next run tries again", day,
                        type(exc).__name__)
    return done
