"""What the latest session of a market set left in the database: its manifest row, the rows it stored per table,
its books at the end and the alerts it raised (``kalshi-ingest demo`` prints it when the run ends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import args_row

from kalshi_store.alerts_store import AlertStore, FiredAlert
from kalshi_store.depth import DepthStore, LastBucket

__all__ = ["SessionDigest", "SessionRow", "latest_session_digest", "rows_per_table"]


class SessionRow(NamedTuple):
    """A session's manifest (``kalshi.sessions``), as far as the digest shows it."""

    session_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    reconnects: int
    gaps: int
    rows_spilled: int
    markets: int


@dataclass(frozen=True)
class SessionDigest:
    session: SessionRow
    #: Rows the session stored, per ``kalshi`` table that has a ``session_id`` (zero counts included), by name.
    rows_per_table: dict[str, int]
    #: The latest bucket of every market at every distance (:meth:`kalshi_store.depth.DepthStore.last_buckets`).
    last_buckets: list[LastBucket]
    #: The alerts the session opened, oldest first.
    alerts: list[FiredAlert]
    #: Alerts opened by earlier sessions that still held in this one (kept, not sent again).
    alerts_still_holding: int

    def depth_at_end(self) -> list[LastBucket]:
        """The latest bucket of every market at its nearest distance from the touch, by market."""
        nearest: dict[str, LastBucket] = {}
        for bucket in self.last_buckets:  # by market, nearest distance first
            nearest.setdefault(bucket.market_ticker, bucket)
        return list(nearest.values())


_LATEST_SESSION_SQL = """
select session_id::text, status, started_at, ended_at, reconnects, gaps, rows_spilled, cardinality(markets)
from kalshi.sessions where market_set = %s order by started_at desc limit 1
"""

# The tables a session writes into: every table of the schema with a session_id column (partitioned tables once,
# not their partitions), so a new table is counted without a change here; and the views that stand for a table
# stored another way (kalshi.orderbook_deltas over the compact delta tables, sql/050; kalshi.trades and
# kalshi.tickers over the compact trade and ticker tables, sql/060), not the dimensions they use.
_SESSION_TABLES_SQL = """
select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attname = 'session_id' and not a.attisdropped
where n.nspname = 'kalshi' and not c.relispartition
  and (c.relkind in ('r', 'p') and c.relname not in ('orderbook_delta_books', 'feeds')
       or c.relkind = 'v' and c.relname in ('orderbook_deltas', 'trades', 'tickers'))
order by c.relname
"""


def latest_session_digest(database_url: str, market_set: str) -> SessionDigest | None:
    """The digest of the session of ``market_set`` that started last (None: the set has no session)."""
    with psycopg.connect(database_url) as conn:
        with conn.cursor(row_factory=args_row(SessionRow)) as cur:
            cur.execute(_LATEST_SESSION_SQL, (market_set,))
            session = cur.fetchone()
        if session is None:
            return None
        alerts = AlertStore(conn)
        return SessionDigest(session=session, rows_per_table=rows_per_table(conn, session.session_id),
                             last_buckets=DepthStore(conn).last_buckets(session.session_id),
                             alerts=alerts.fired_in(session.session_id),
                             alerts_still_holding=alerts.still_holding_from_earlier(session.session_id))


def rows_per_table(conn: psycopg.Connection[Any], session_id: str) -> dict[str, int]:
    """How many rows ``session_id`` stored in each ``kalshi`` table that has a ``session_id`` column."""
    tables = [name for (name,) in conn.execute(_SESSION_TABLES_SQL).fetchall()]
    counts: dict[str, int] = {}
    for name in tables:
        query = sql.SQL("select count(*) from kalshi.{} where session_id = %s").format(sql.Identifier(name))
        row = conn.execute(query, (session_id,)).fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts
