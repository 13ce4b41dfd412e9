"""Alerts in storage: the recorded facts the alert rules read, and the alert episodes of ``kalshi.alerts``.

An episode is one stretch of time a condition (rule + market) holds: opened once, kept while it holds in later
sessions, resolved when it stops (sql/021). Which conditions hold, and so which episodes to open, keep and resolve,
is decided by :mod:`kalshi_ingest.alerts`; this module only reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import args_row

from kalshi_store.depth import DepthStore

__all__ = ["AlertStore", "Condition", "Delivery", "FiredAlert", "NewEpisode", "OpenEpisode", "PriceRange", "store_deliveries"]


class PriceRange(NamedTuple):
    """The lowest and highest traded or ticker price of a market in a time window."""

    market_ticker: str
    low: Decimal
    high: Decimal


class OpenEpisode(NamedTuple):
    """An alert episode of a market set that is not resolved."""

    alert_id: str
    condition_key: str
    rule: str


@dataclass(frozen=True)
class Condition:
    """A rule holding for one market (``market_ticker``) or for the whole session (None): what an alert says."""

    rule: str
    kind: str
    market_ticker: str | None
    value: Decimal | None
    threshold: Decimal | None
    message: str

    @property
    def key(self) -> str:
        """The condition's identity across sessions: an episode stays open while a condition with its key holds."""
        return f"{self.rule}|{self.market_ticker or '*'}"


class NewEpisode(NamedTuple):
    """An episode to open: the condition that started to hold."""

    alert_id: str
    condition: Condition


class Delivery(NamedTuple):
    """Whether an alert's notification was accepted, and why not."""

    alert_id: str
    notified: bool
    notify_error: str | None


class FiredAlert(NamedTuple):
    """An alert a session opened, in the order it was fired."""

    kind: str
    message: str
    notified: bool


# A price is a trade's YES price or a ticker's last price, at the exchange's time (a trade without one: when we
# received it).
_LAST_PRICES_SQL = """
with prices as (
    select market_ticker, coalesce(exchange_ts, received_at) as at, yes_price as price
    from kalshi.trades where market_ticker = any(%(markets)s) and coalesce(exchange_ts, received_at) <= %(until)s
      and coalesce(exchange_ts, received_at) > %(since)s
    union all
    select market_ticker, exchange_ts, price from kalshi.tickers
    where market_ticker = any(%(markets)s) and price is not null and exchange_ts <= %(until)s
      and exchange_ts > %(since)s
)
select distinct on (market_ticker) market_ticker, price from prices order by market_ticker, at desc
"""

_PRICE_RANGES_SQL = """
with prices as (
    select market_ticker, coalesce(exchange_ts, received_at) as at, yes_price as price
    from kalshi.trades where market_ticker = any(%(markets)s)
      and coalesce(exchange_ts, received_at) between %(since)s and %(until)s
    union all
    select market_ticker, exchange_ts, price from kalshi.tickers
    where market_ticker = any(%(markets)s) and price is not null and exchange_ts between %(since)s and %(until)s
)
select market_ticker, min(price), max(price) from prices group by market_ticker
"""

_PREVIOUS_SESSION_END_SQL = """
select max(ended_at) from kalshi.sessions
where market_set = %(market_set)s and session_id <> %(session_id)s and ended_at is not null
  and ended_at <= %(started_at)s
"""

_LAST_SEEN_SQL = """
select market_ticker, max(received_at) from (
    select market_ticker, received_at from kalshi.orderbook_deltas where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.orderbook_snapshots where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.tickers where session_id = %(session_id)s
    union all select market_ticker, received_at from kalshi.trades where session_id = %(session_id)s
) seen group by market_ticker
"""

_OPEN_SQL = """
select alert_id::text, condition_key, rule from kalshi.alerts
where market_set = %(market_set)s and resolved_at is null
"""

_KEEP_SQL = "update kalshi.alerts set last_seen_at = now(), last_session_id = %s where alert_id = %s"

_RESOLVE_SQL = "update kalshi.alerts set resolved_at = now() where alert_id = %s"

_OPEN_EPISODE_SQL = """
insert into kalshi.alerts (alert_id, market_set, condition_key, rule, kind, market_ticker, session_id,
    last_session_id, value, threshold, message)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

_DELIVERY_SQL = "update kalshi.alerts set notified = %s, notify_error = %s where alert_id = %s"

_FIRED_IN_SQL = "select kind, message, notified from kalshi.alerts where session_id = %s order by fired_at"

_STILL_HOLDING_SQL = "select count(*) from kalshi.alerts where last_session_id = %s and session_id <> %s"


class AlertStore:
    """The alert rules' reads and the episode writes on one connection: one transaction, committed by
    :meth:`update_episodes` (or when :meth:`connect`'s block ends without an error)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        #: ``kalshi.depth_summaries`` on the same connection (the book rules read the session's last buckets).
        self.depth = DepthStore(conn)

    @classmethod
    @contextmanager
    def connect(cls, database_url: str) -> Iterator[AlertStore]:
        with psycopg.connect(database_url) as conn:
            yield cls(conn)

    def last_prices(self, markets: Sequence[str], *, since: datetime, until: datetime) -> dict[str, Decimal]:
        """The last price of each market after ``since``, up to and including ``until`` (markets without one are
        absent)."""
        with self._conn.cursor() as cur:
            cur.execute(_LAST_PRICES_SQL, {"markets": list(markets), "since": since, "until": until})
            return dict(cur.fetchall())

    def price_ranges(self, markets: Sequence[str], *, since: datetime, until: datetime) -> list[PriceRange]:
        """Each market's price range from ``since`` to ``until`` (both included; markets without a price are
        absent)."""
        with self._conn.cursor(row_factory=args_row(PriceRange)) as cur:
            cur.execute(_PRICE_RANGES_SQL, {"markets": list(markets), "since": since, "until": until})
            return cur.fetchall()

    def previous_session_end(self, market_set: str, session_id: str, started_at: datetime) -> datetime | None:
        """When the latest earlier ended session of ``market_set`` ended (None: this is its first)."""
        with self._conn.cursor() as cur:
            cur.execute(_PREVIOUS_SESSION_END_SQL,
                        {"market_set": market_set, "session_id": session_id, "started_at": started_at})
            row = cur.fetchone()
        return row[0] if row else None

    def last_seen(self, session_id: str) -> dict[str, datetime]:
        """When the session last received anything (a book message, a ticker, a trade) for each market (markets it
        received nothing for are absent)."""
        with self._conn.cursor() as cur:
            cur.execute(_LAST_SEEN_SQL, {"session_id": session_id})
            return dict(cur.fetchall())

    def open_episodes(self, market_set: str) -> list[OpenEpisode]:
        """The market set's unresolved episodes."""
        with self._conn.cursor(row_factory=args_row(OpenEpisode)) as cur:
            cur.execute(_OPEN_SQL, {"market_set": market_set})
            return cur.fetchall()

    def update_episodes(self, market_set: str, session_id: str, *, holding: Sequence[str], resolved: Sequence[str],
                        opened: Sequence[NewEpisode]) -> None:
        """In one transaction: mark the ``holding`` episodes as seen by ``session_id``, resolve the ``resolved``
        ones, open the ``opened`` ones (fired by ``session_id``); then commit."""
        with self._conn.cursor() as cur:
            cur.executemany(_KEEP_SQL, [(session_id, alert_id) for alert_id in holding])
            cur.executemany(_RESOLVE_SQL, [(alert_id,) for alert_id in resolved])
            cur.executemany(_OPEN_EPISODE_SQL, [
                (alert_id, market_set, c.key, c.rule, c.kind, c.market_ticker, session_id, session_id, c.value,
                 c.threshold, c.message) for alert_id, c in opened])
        self._conn.commit()

    def fired_in(self, session_id: str) -> list[FiredAlert]:
        """The alerts ``session_id`` opened, oldest first."""
        with self._conn.cursor(row_factory=args_row(FiredAlert)) as cur:
            cur.execute(_FIRED_IN_SQL, (session_id,))
            return cur.fetchall()

    def still_holding_from_earlier(self, session_id: str) -> int:
        """How many episodes opened by earlier sessions still held in ``session_id`` (kept, not sent again)."""
        with self._conn.cursor() as cur:
            cur.execute(_STILL_HOLDING_SQL, (session_id, session_id))
            row = cur.fetchone()
        return int(row[0]) if row else 0


def store_deliveries(database_url: str, deliveries: Sequence[Delivery]) -> None:
    """Record on each alert whether its notification was accepted (and why not)."""
    if not deliveries:
        return
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(_DELIVERY_SQL, [(d.notified, d.notify_error, d.alert_id) for d in deliveries])
