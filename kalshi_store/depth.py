"""Depth summaries in storage: the stored books a summary replays, what makes its buckets untrusted, and
``kalshi.depth_summaries`` itself.

:meth:`DepthStore.book_events` is the one place that reads ``kalshi.orderbook_snapshots`` and
``kalshi.orderbook_deltas`` for a replay: a change of how books are stored changes it and nothing else. The
replay and the aggregation are product logic (:mod:`kalshi_ingest.summaries`); this module only reads and writes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg.rows import args_row

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEPTH_SUMMARY_COLUMNS", "BookEvent", "DepthStore", "LastBucket", "LedgerGap", "StoredDelta",
           "StoredSnapshot", "UncoveredSpan", "Window"]

#: The columns of a depth summary frame, in order (what :meth:`DepthStore.write_summaries` stores).
DEPTH_SUMMARY_COLUMNS = ("market_ticker", "bucket_start", "bucket_seconds", "distance", "samples", "updates",
                         "best_bid", "best_ask", "spread", "spread_mean", "mid", "bid_depth", "ask_depth",
                         "bid_depth_min", "ask_depth_min", "imbalance", "trusted")


class StoredSnapshot(NamedTuple):
    """A stored order book snapshot of a session (``kalshi.orderbook_snapshots``): both bid ladders."""

    generation: int
    sid: int
    seq: int
    market_ticker: str
    received_at: datetime
    use_yes_price: bool
    yes_prices: list[Decimal]
    yes_sizes: list[Decimal]
    no_prices: list[Decimal]
    no_sizes: list[Decimal]


class StoredDelta(NamedTuple):
    """A stored order book delta of a session (``kalshi.orderbook_deltas``): one level of one side changed."""

    generation: int
    sid: int
    seq: int
    market_ticker: str
    received_at: datetime
    side: str
    price: Decimal
    delta: Decimal


#: A session's stored book message, as :meth:`DepthStore.book_events` streams them.
BookEvent = StoredSnapshot | StoredDelta


class LedgerGap(NamedTuple):
    """A gap or disconnect of the session's gap ledger (``markets`` empty: every market of the session)."""

    markets: frozenset[str]
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None


class UncoveredSpan(NamedTuple):
    """Time nobody recorded ``market_ticker`` (``kalshi.uncovered_windows``)."""

    market_ticker: str
    started_at: datetime
    ended_at: datetime


class Window(NamedTuple):
    """A half-open time window; None on a side: unbounded."""

    start: datetime | None
    end: datetime | None


class LastBucket(NamedTuple):
    """The latest stored bucket of a market at one distance from the touch."""

    market_ticker: str
    distance: Decimal
    bucket_start: datetime
    best_bid: Decimal | None
    best_ask: Decimal | None
    spread: Decimal | None
    bid_depth: Decimal | None
    ask_depth: Decimal | None
    imbalance: Decimal | None


_EVENTS_SQL = """
select true as is_snapshot, generation, sid, seq, market_ticker, received_at, use_yes_price,
       yes_prices, yes_sizes, no_prices, no_sizes, null::text as side, null::numeric as price, null::numeric as delta
from kalshi.orderbook_snapshots where session_id = %(session_id)s
union all
select false, generation, sid, seq, market_ticker, received_at, null,
       null, null, null, null, side, price, delta
from kalshi.orderbook_deltas where session_id = %(session_id)s
order by generation, sid, seq
"""

_GAPS_SQL = """
select markets, started_at, ended_at, outcome from kalshi.gap_ledger
where session_id = %(session_id)s and kind in ('gap', 'disconnect')
"""

_WINDOW_SQL = """
select (select max(p.superseded_at) from kalshi.sessions p where p.superseded_by = s.session_id),
       s.superseded_at
from kalshi.sessions s where s.session_id = %(session_id)s
"""

_UNCOVERED_SQL = """
select market_ticker, started_at, ended_at from kalshi.uncovered_windows u
where u.market_set = %(market_set)s
  and u.time_range && (select tstzrange(s.started_at, coalesce(s.ended_at, greatest(s.heartbeat_at, s.updated_at)))
                       from kalshi.sessions s where s.session_id = %(session_id)s)
"""

_INSERT_SQL = """
insert into kalshi.depth_summaries (session_id, market_set, market_ticker, bucket_start, bucket_seconds, distance,
    samples, updates, best_bid, best_ask, spread, spread_mean, mid, bid_depth, ask_depth, bid_depth_min,
    ask_depth_min, imbalance, trusted)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (session_id, market_ticker, bucket_start, distance) do update set
    samples = excluded.samples, updates = excluded.updates, best_bid = excluded.best_bid,
    best_ask = excluded.best_ask, spread = excluded.spread, spread_mean = excluded.spread_mean, mid = excluded.mid,
    bid_depth = excluded.bid_depth, ask_depth = excluded.ask_depth, bid_depth_min = excluded.bid_depth_min,
    ask_depth_min = excluded.ask_depth_min, imbalance = excluded.imbalance, trusted = excluded.trusted,
    computed_at = now()
"""

_LAST_BUCKETS_SQL = """
select distinct on (market_ticker, distance) market_ticker, distance, bucket_start, best_bid, best_ask, spread,
       bid_depth, ask_depth, imbalance
from kalshi.depth_summaries where session_id = %(session_id)s
order by market_ticker, distance, bucket_start desc
"""


class DepthStore:
    """Depth-summary reads and writes on one connection (one transaction, committed by :meth:`write_summaries` or
    when :meth:`connect`'s block ends without an error)."""

    #: Rows fetched per round trip while :meth:`book_events` streams a session's books.
    EVENTS_PER_FETCH = 5000

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    @contextmanager
    def connect(cls, database_url: str) -> Iterator[DepthStore]:
        with psycopg.connect(database_url) as conn:
            yield cls(conn)

    def book_events(self, session_id: UUID | str) -> Iterator[BookEvent]:
        """The session's stored snapshots and deltas in wire order (per connection generation and subscription, by
        ``seq``), streamed from a server-side cursor."""
        with self._conn.cursor(row_factory=args_row(_book_event), name="depth_replay") as cur:
            cur.itersize = self.EVENTS_PER_FETCH
            cur.execute(_EVENTS_SQL, {"session_id": session_id})
            yield from cur

    def gaps(self, session_id: UUID | str) -> list[LedgerGap]:
        """The session's gaps and disconnects (the gap ledger's other kinds do not damage a book)."""
        with self._conn.cursor() as cur:
            cur.execute(_GAPS_SQL, {"session_id": session_id})
            return [LedgerGap(frozenset(markets or ()), start, end, outcome)
                    for markets, start, end, outcome in cur.fetchall()]

    def authoritative_window(self, session_id: UUID | str) -> Window:
        """From the handover that made the session the recorder of its set (its predecessor's ``superseded_at``) to
        its own handover (its ``superseded_at``); unbounded on a side without a handover, or for an unknown
        session."""
        with self._conn.cursor() as cur:
            cur.execute(_WINDOW_SQL, {"session_id": session_id})
            row = cur.fetchone()
        return Window(row[0], row[1]) if row else Window(None, None)

    def uncovered_windows(self, session_id: UUID | str, market_set: str) -> list[UncoveredSpan]:
        """The time nobody recorded a market of ``market_set`` that overlaps the session's own time."""
        with self._conn.cursor() as cur:
            cur.execute(_UNCOVERED_SQL, {"session_id": session_id, "market_set": market_set})
            return [UncoveredSpan(*row) for row in cur.fetchall()]

    def write_summaries(self, session_id: UUID | str, market_set: str, summary: pd.DataFrame) -> int:
        """Upsert a summary frame (the columns of :data:`DEPTH_SUMMARY_COLUMNS`) and commit: a retried task
        rewrites the same keys. Returns the row count."""
        rows = [
            (session_id, market_set, r.market_ticker, r.bucket_start, r.bucket_seconds, r.distance, int(r.samples),
             int(r.updates), r.best_bid, r.best_ask, r.spread, _number(r.spread_mean), r.mid, _number(r.bid_depth),
             _number(r.ask_depth), _number(r.bid_depth_min), _number(r.ask_depth_min), _number(r.imbalance),
             bool(r.trusted))
            for r in summary.itertuples(index=False)
        ]
        with self._conn.cursor() as cur:
            cur.executemany(_INSERT_SQL, rows)
        self._conn.commit()
        return len(rows)

    def last_buckets(self, session_id: UUID | str) -> list[LastBucket]:
        """The latest stored bucket of every market at every distance, by market then distance (nearest first)."""
        with self._conn.cursor(row_factory=args_row(LastBucket)) as cur:
            cur.execute(_LAST_BUCKETS_SQL, {"session_id": session_id})
            return cur.fetchall()


def _book_event(is_snapshot: bool, generation: int, sid: int, seq: int, market_ticker: str, received_at: datetime,
                use_yes_price: bool, yes_prices: list[Decimal], yes_sizes: list[Decimal], no_prices: list[Decimal],
                no_sizes: list[Decimal], side: str, price: Decimal, delta: Decimal) -> BookEvent:
    """A row of the replay query (both tables' columns, the other kind's null) as the event it stores."""
    if is_snapshot:
        return StoredSnapshot(generation, sid, seq, market_ticker, received_at, use_yes_price, yes_prices, yes_sizes,
                              no_prices, no_sizes)
    return StoredDelta(generation, sid, seq, market_ticker, received_at, side, price, delta)


def _number(value: float) -> Decimal | None:
    """A float aggregate as a numeric (6 decimals); NaN (no samples to average) as NULL."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else Decimal(repr(round(value, 6)))
