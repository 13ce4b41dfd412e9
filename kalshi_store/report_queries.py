"""The report's reads: the report views of ``sql/030-035`` (the ones users query in psql), one query per table.

The report (``kalshi_ingest.report``) decides what to read (market set, range, bar length) and what an empty
answer means; this module only holds the SQL and runs it. Every statement is a constant with bound parameters.

* ``kalshi.session_health``, ``kalshi.untrusted_windows``: sessions, incidents and the windows to distrust;
* ``kalshi.trade_bars(...)``: OHLC / VWAP / volume bars; ``kalshi.spread_bars(...)``: bid, ask and spread;
* ``kalshi.depth_over_time``: book depth from the depth summaries; ``kalshi.alerts``: alerts fired;
* ``kalshi.positions_by_market``: our positions and realised P&L (when the account channels were recorded).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString

import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "ReportQuery",
    "Rows",
    "describe_database",
    "read_tables",
    "recorded_markets",
    "recorded_range",
    "report_connection",
    "session_window",
]


@dataclass(frozen=True)
class Rows:
    """The answer of one query: column names (also when no row came back) and the rows."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class ReportQuery:
    """What a report reads: ``market_set`` (``None``: every market) and ``markets`` over [start, end) in ``bar``s.

    ``session_id`` adds the alerts that session's evaluation fired (after its end) to a session's report.
    """

    market_set: str | None
    markets: list[str]
    start: datetime
    end: datetime
    bar: timedelta
    session_id: str | None = None

    def params(self) -> dict[str, Any]:
        return {"market_set": self.market_set, "markets": self.markets, "start": self.start, "end": self.end,
                "bar": self.bar, "session_id": self.session_id}


_RANGE_SQL: Final = """
select min(started_at) as first_start, max(coalesce(ended_at, updated_at)) as last_end
from kalshi.sessions
where %(market_set)s::text is null or market_set = %(market_set)s
"""

_SESSION_SQL: Final = """
select market_set, started_at, coalesce(ended_at, updated_at) from kalshi.sessions where session_id = %(session_id)s
"""

_MARKETS_SQL: Final = """
select distinct w.market_ticker
from kalshi.coverage_windows w
where (%(market_set)s::text is null or w.market_set = %(market_set)s)
  and w.recording_from < %(end)s and w.recording_to > %(start)s
order by 1
"""

_TRADED_MARKETS_SQL: Final = """
select distinct market_ticker from kalshi.trades where exchange_ts >= %(start)s and exchange_ts < %(end)s order by 1
"""

_SESSIONS_SQL: Final = """
select session_id, market_set, environment, status, status_message, started_at, recorded_until, planned_seconds,
       recorded_seconds, untrusted_seconds, reconnects, gaps, incidents, incidents_never_closed, rows_written,
       rows_spilled, dead_letters, paused_seconds, healthy
from kalshi.session_health
where (%(market_set)s::text is null or market_set = %(market_set)s)
  and started_at < %(end)s and recorded_until > %(start)s
order by started_at
"""

_WINDOWS_SQL: Final = """
select market_ticker, kind, started_at, ended_at, seconds, outcome, never_closed, session_id
from kalshi.untrusted_windows
where market_ticker = any(%(markets)s)
  and (%(market_set)s::text is null or market_set = %(market_set)s)
  and time_range && tstzrange(%(start)s, %(end)s)
order by started_at, market_ticker
"""

_COMPLETENESS_SQL: Final = """
-- Per market: the span from its first to its last recorded instant within the range (holes between sessions
-- inside it count), and how much of that span an untrusted window (incident or uncovered time) touches.
with covered as (
    select w.market_ticker, range_agg(w.time_range * tstzrange(%(start)s, %(end)s)) as recorded
    from kalshi.coverage_windows w
    where (%(market_set)s::text is null or w.market_set = %(market_set)s)
      and w.market_ticker = any(%(markets)s)
    group by w.market_ticker
),
span as (
    select market_ticker, recorded,
           tstzmultirange(tstzrange(lower(recorded), upper(recorded))) as span
    from covered
    where not isempty(recorded)
),
untrusted as (
    select market_ticker, range_agg(time_range) as untrusted
    from kalshi.untrusted_windows
    where market_ticker = any(%(markets)s) and (%(market_set)s::text is null or market_set = %(market_set)s)
    group by market_ticker
)
select s.market_ticker,
       kalshi.multirange_seconds(s.span) as recorded_seconds,
       kalshi.multirange_seconds(s.span * coalesce(u.untrusted, '{}'::tstzmultirange)) as untrusted_seconds,
       kalshi.multirange_seconds(s.span - s.recorded) as uncovered_seconds
from span s
left join untrusted u using (market_ticker)
"""

_BARS_SQL: Final = """
select * from kalshi.trade_bars(%(bar)s, %(start)s, %(end)s)
where market_ticker = any(%(markets)s)
order by market_ticker, bar_start
"""

_SPREADS_SQL: Final = """
select * from kalshi.spread_bars(%(bar)s, %(start)s, %(end)s)
where market_ticker = any(%(markets)s)
order by market_ticker, bar_start
"""

_DEPTH_SQL: Final = """
select market_ticker, bucket_start, bucket_end, distance, bid_depth, ask_depth, best_bid, best_ask, trusted
from kalshi.depth_over_time
where market_ticker = any(%(markets)s)
  and (%(market_set)s::text is null or market_set = %(market_set)s)
  and bucket_start >= %(start)s and bucket_start < %(end)s
order by market_ticker, bucket_start, distance
"""

_ALERTS_SQL: Final = """
select fired_at, rule, kind, market_ticker, value, threshold, message, resolved_at, notified, notify_error
from kalshi.alerts
where (%(market_set)s::text is null or market_set = %(market_set)s)
  and ((fired_at < %(end)s and coalesce(resolved_at, 'infinity') >= %(start)s)
       -- a session's report shows the alerts its own evaluation fired (after its end)
       or %(session_id)s::uuid in (session_id, last_session_id))
order by fired_at
"""

_POSITIONS_SQL: Final = """
select * from kalshi.positions_by_market where market_ticker = any(%(markets)s) order by market_ticker, subaccount
"""

#: The report's tables, by the name :func:`read_tables` gives them.
TABLES: Final[dict[str, LiteralString]] = {
    "sessions": _SESSIONS_SQL, "windows": _WINDOWS_SQL, "completeness": _COMPLETENESS_SQL, "bars": _BARS_SQL,
    "spreads": _SPREADS_SQL, "depth": _DEPTH_SQL, "alerts": _ALERTS_SQL, "positions": _POSITIONS_SQL,
}


@contextmanager
def report_connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A read connection whose times come back in UTC (the report prints UTC)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        yield conn


def recorded_range(conn: psycopg.Connection[Any], market_set: str | None) -> tuple[datetime, datetime] | None:
    """When ``market_set`` (``None``: any set) first started and last recorded; ``None`` if it never did."""
    row = conn.execute(_RANGE_SQL, {"market_set": market_set}).fetchone()
    if row is None or row[1] is None:
        return None
    return row[0], row[1]


def session_window(conn: psycopg.Connection[Any], session_id: str) -> tuple[str, datetime, datetime] | None:
    """A session's market set, start and end (its last update while it runs); ``None`` if there is none."""
    row = conn.execute(_SESSION_SQL, {"session_id": session_id}).fetchone()
    return (row[0], row[1], row[2]) if row is not None else None


def recorded_markets(conn: psycopg.Connection[Any], market_set: str | None, start: datetime, end: datetime
                     ) -> list[str]:
    """The markets recorded for ``market_set`` in [start, end); for every set, the traded ones if none was."""
    params = {"market_set": market_set, "start": start, "end": end}
    markets = [r[0] for r in conn.execute(_MARKETS_SQL, params).fetchall()]
    if not markets and market_set is None:
        markets = [r[0] for r in conn.execute(_TRADED_MARKETS_SQL, params).fetchall()]
    return markets


def read_tables(conn: psycopg.Connection[Any], query: ReportQuery) -> dict[str, Rows]:
    """Every table of the report (:data:`TABLES`), read for ``query``."""
    params = query.params()
    tables = {}
    for name, statement in TABLES.items():
        with conn.cursor() as cur:
            cur.execute(statement, params)
            tables[name] = Rows(columns=[c.name for c in cur.description or ()], rows=list(cur.fetchall()))
    return tables


def describe_database(url: str) -> str:
    """``db on host:port`` without user or password."""
    params = conninfo_to_dict(url)
    return f"{params.get('dbname', '?')} on {params.get('host', 'localhost')}:{params.get('port', 5432)}"
