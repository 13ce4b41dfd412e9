"""Retention: drop whole days of market data older than N days (``kalshi-ingest db retention --keep-days N``).

Only the day-partitioned tables (trades, order book snapshots and deltas, tickers) shrink; sessions, the gap
ledger, dead letters and the small tables are kept. The work is done by ``kalshi.drop_partitions_before(date)``
(sql/004), so it can also be run from ``psql``; then the books of the dropped days that no delta refers to any more
(``kalshi.orderbook_delta_books``, sql/050) are deleted (:func:`delete_unused_books`, which the archive runs too),
and so are the feeds of trades and ticker updates (``kalshi.feeds``, sql/060) that only the dropped days used
(:func:`delete_unused_feeds`, also run by the archive). The market keys (``kalshi.market_keys``, one short row per
ticker ever recorded) are kept: writers remember them for the life of their connection.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["apply_retention", "delete_unused_books", "delete_unused_feeds", "ensure_partitions"]

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


# Feeds (sql/060: session x connection x subscription x market_id) carry no day, so they go by their session's: a
# feed of a session that was last heard of more than a day before {before} (its rows, received before that, are of
# days before {before}; the day of margin covers exchange times a little after the receive time) and that no row
# of those days refers to any more. The anti-joins read only the partitions before {before} (after a drop, what is
# left of them: rows of those days in a default partition, a table or day not archived yet) and after today (rows
# stamped in the future by a wrong exchange clock; those partitions are empty otherwise). A session's writer
# only ever resolves its own feeds again when it replays that session's rows, which are of the dropped days too.
_UNUSED_FEEDS = """
delete from kalshi.feeds f
using kalshi.sessions s
where s.session_id = f.session_id
  and greatest(s.started_at, s.ended_at, s.heartbeat_at, s.updated_at)
      < ({before}::date - 1)::timestamp at time zone 'UTC'
  and not exists (select from kalshi.trade_rows t
                  where t.feed_key = f.feed_key and (t.trade_date < {before} or t.trade_date > {today}))
  and not exists (select from kalshi.ticker_rows r
                  where r.feed_key = f.feed_key and (r.exchange_ts < {before}::timestamp at time zone 'UTC'
                                                     or r.exchange_ts >= ({today} + 1)::timestamp at time zone 'UTC'))
"""


def delete_unused_feeds(conn: psycopg.Connection[Any], *, before: date) -> int:
    """Delete the feeds of trades and ticker updates (sql/060) that only days before ``before`` used, once those
    days are dropped: the feeds of sessions last heard of more than a day before ``before`` that no trade or ticker
    update of those days refers to any more; how many."""
    today = sql.SQL("(now() at time zone 'UTC')::date")
    return conn.execute(sql.SQL(_UNUSED_FEEDS).format(before=sql.Literal(before), today=today)).rowcount


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
    books of the dropped days no delta refers to any more, and the feeds only they used.
    """
    if keep_days < 0:
        raise ValueError(f"keep_days must be >= 0, not {keep_days}")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select * from kalshi.drop_partitions_before(%s)", (cutoff,)).fetchall()
        books = delete_unused_books(conn, before=cutoff)
        feeds = delete_unused_feeds(conn, before=cutoff)
    changes = [(str(name), str(action), int(count)) for name, action, count in rows]
    if books:
        changes.append(("kalshi.orderbook_delta_books", "deleted books of dropped days", books))
    if feeds:
        changes.append(("kalshi.feeds", "deleted feeds of dropped days", feeds))
    return changes


def ensure_partitions(url: str, days_ahead: int = 7) -> int:
    """Create day partitions from yesterday to ``days_ahead`` days ahead; returns how many were created."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select kalshi.ensure_partitions(%s)", (days_ahead,)).fetchone()
    return int(row[0]) if row else 0
