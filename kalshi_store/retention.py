"""Retention: drop whole days of market data older than N days (``kalshi-ingest db retention --keep-days N``).

Only the day-partitioned tables (trades, order book snapshots and deltas, tickers) shrink; sessions, the gap
ledger, dead letters and the small tables are kept. The work is done by ``kalshi.drop_partitions_before(date)``
(sql/004), so it can also be run from ``psql``; then the books of the dropped days that no delta refers to any more
(``kalshi.orderbook_delta_books``, sql/050) are deleted (:func:`delete_unused_books`, which the archive runs too).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["apply_retention", "delete_unused_books", "ensure_partitions"]

# Books of the days chosen by {days} that no delta row or extra refers to (rows of an old day left in the default
# partitions keep theirs). Runs once the days' partitions are dropped: the anti-joins read what is left of them.
_UNUSED_BOOKS = """
delete from kalshi.orderbook_delta_books b
where b.session_date {days}
  and not exists (select from kalshi.orderbook_delta_rows d
                  where d.book_key = b.book_key and d.session_date = b.session_date)
  and not exists (select from kalshi.orderbook_delta_extras x
                  where x.book_key = b.book_key and x.session_date = b.session_date)
"""


def delete_unused_books(conn: psycopg.Connection[Any], *, day: date | None = None,
                        before: date | None = None) -> int:
    """Delete the books (sql/050) of ``day`` (or of the days before ``before``) that no delta refers to; how many.
    Call it after the days' delta partitions are dropped (in the same transaction as the drop, or after it)."""
    if (day is None) == (before is None):
        raise ValueError("give day or before")
    days = sql.SQL("= {}").format(sql.Literal(day)) if day is not None else sql.SQL("< {}").format(
        sql.Literal(before))
    return conn.execute(sql.SQL(_UNUSED_BOOKS).format(days=days)).rowcount


def apply_retention(url: str, keep_days: int, *, today: date | None = None) -> list[tuple[str, str, int]]:
    """Drop partitions of days before ``today - keep_days`` (UTC); returns ``(table, action, rows)`` per change.

    ``keep_days=0`` keeps only today. Rows of older days stuck in a default partition are deleted too, and the
    books of the dropped days no delta refers to any more.
    """
    if keep_days < 0:
        raise ValueError(f"keep_days must be >= 0, not {keep_days}")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select * from kalshi.drop_partitions_before(%s)", (cutoff,)).fetchall()
        books = delete_unused_books(conn, before=cutoff)
    changes = [(str(name), str(action), int(count)) for name, action, count in rows]
    if books:
        changes.append(("kalshi.orderbook_delta_books", "deleted books of dropped days", books))
    return changes


def ensure_partitions(url: str, days_ahead: int = 7) -> int:
    """Create day partitions from yesterday to ``days_ahead`` days ahead; returns how many were created."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select kalshi.ensure_partitions(%s)", (days_ahead,)).fetchone()
    return int(row[0]) if row else 0
