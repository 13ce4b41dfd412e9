"""What a report shows: the report views' rows for a market set over a time range, as pandas frames.

The SQL lives in :mod:`kalshi_store.report_queries`; this module decides the range, the bar length and the
markets, and what an empty answer means (:class:`ReportError`, one line for the user).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from kalshi_ingest.report import formatting as fmt
from kalshi_ingest.report.options import BAR_CHOICES, DEFAULT_SPAN, MAX_BARS
from kalshi_store import report_queries
from kalshi_store.report_queries import ReportQuery

__all__ = ["ReportData", "ReportError", "choose_bar", "collect", "session_data"]


class ReportError(RuntimeError):
    """Nothing to report (no session, no market, an empty range) or a bad argument; the message says which."""


@dataclass
class ReportData:
    """Everything a report shows, read from the report views (pandas frames, one row per view row)."""

    market_set: str | None
    start: datetime
    end: datetime
    bar: timedelta
    markets: list[str]
    database: str
    sessions: pd.DataFrame
    windows: pd.DataFrame
    completeness: pd.DataFrame
    bars: pd.DataFrame
    spreads: pd.DataFrame
    depth: pd.DataFrame
    alerts: pd.DataFrame
    positions: pd.DataFrame
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def title(self) -> str:
        return f"Market set {self.market_set}" if self.market_set else "All recorded markets"

    def incidents(self) -> list[dict[str, Any]]:
        """The untrusted windows grouped per incident: one entry with the markets it affected."""
        grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
        for w in self.windows.itertuples():
            key = (str(w.session_id), w.kind, w.started_at, w.ended_at)
            entry = grouped.setdefault(key, {"kind": w.kind, "started_at": w.started_at, "ended_at": w.ended_at,
                                             "seconds": w.seconds, "outcome": w.outcome,
                                             "never_closed": w.never_closed, "markets": []})
            entry["markets"].append(w.market_ticker)
        for entry in grouped.values():
            markets = entry["markets"]
            entry["affected"] = (f"all {len(markets)} markets" if len(markets) == len(self.markets) > 1
                                 else ", ".join(markets))
        return sorted(grouped.values(), key=lambda e: e["started_at"])

    def market_summary(self) -> pd.DataFrame:
        """One row per market: trades, volume, VWAP, OHLC over the range, last top of book, completeness."""
        rows = []
        for market in self.markets:
            bars = self.bars[self.bars.market_ticker == market].sort_values("bar_start")
            spreads = self.spreads[self.spreads.market_ticker == market].sort_values("bar_start")
            done = self.completeness[self.completeness.market_ticker == market]
            volume = bars.volume.sum() if len(bars) else Decimal(0)
            last = spreads.iloc[-1] if len(spreads) else None
            rows.append({
                "market": market,
                "trades": int(bars.trades.sum()) if len(bars) else 0,
                "volume": volume,
                "vwap": (bars.notional.sum() / volume) if volume else None,
                "open": bars.open.iloc[0] if len(bars) else None,
                "high": bars.high.max() if len(bars) else None,
                "low": bars.low.min() if len(bars) else None,
                "close": bars.close.iloc[-1] if len(bars) else None,
                "bid": last.yes_bid if last is not None else None,
                "ask": last.yes_ask if last is not None else None,
                "spread": last.spread if last is not None else None,
                "spread_mean": fmt.mean(spreads.spread_mean) if len(spreads) else None,
                "places": fmt.places(bars.open, bars.high, bars.low, bars.close, spreads.yes_bid, spreads.yes_ask),
                "recorded": float(done.recorded_seconds.iloc[0]) if len(done) else 0.0,
                "untrusted": float(done.untrusted_seconds.iloc[0]) if len(done) else 0.0,
            })
        return pd.DataFrame(rows)


def choose_bar(start: datetime, end: datetime) -> timedelta:
    """The shortest bar in BAR_CHOICES that splits [start, end) into at most MAX_BARS bars."""
    span = end - start
    for bar in BAR_CHOICES:
        if span / bar <= MAX_BARS:
            return bar
    return BAR_CHOICES[-1]


def collect(url: str, market_set: str | None = None, start: datetime | None = None, end: datetime | None = None,
            *, bar: timedelta | None = None, session_id: str | None = None) -> ReportData:
    """Read the report's data for ``market_set`` (``None``: every market) over [start, end).

    Without ``end``, the range ends when the market set last recorded; without ``start``, it starts
    :data:`DEFAULT_SPAN` earlier (or when the set first recorded, if later). ``bar`` defaults to
    :func:`choose_bar`.
    """
    with report_queries.report_connection(url) as conn:
        if start is None or end is None:
            recorded = report_queries.recorded_range(conn, market_set)
            if recorded is None:
                what = f"market set {market_set!r}" if market_set else "this database"
                raise ReportError(f"no recording session found for {what}; record one first (kalshi-ingest demo)")
            first, last = recorded
            end = end or last + timedelta(seconds=1)
            start = start or max(first, end - DEFAULT_SPAN)
        if start >= end:
            raise ReportError(f"empty time range: {start.isoformat()} is not before {end.isoformat()}")
        bar = bar or choose_bar(start, end)
        markets = report_queries.recorded_markets(conn, market_set, start, end)
        if not markets:
            raise ReportError(f"no market was recorded between {start.isoformat()} and {end.isoformat()}"
                              + (f" for market set {market_set!r}" if market_set else ""))
        query = ReportQuery(market_set=market_set, markets=markets, start=start, end=end, bar=bar,
                            session_id=session_id)
        tables = {name: pd.DataFrame(rows.rows, columns=rows.columns)
                  for name, rows in report_queries.read_tables(conn, query).items()}
    return ReportData(market_set=market_set, start=start, end=end, bar=bar, markets=markets,
                      database=report_queries.describe_database(url), **tables)


def session_data(url: str, session_id: str) -> ReportData:
    """The data of one recording session's report: its market set over its own window."""
    with report_queries.report_connection(url) as conn:
        window = report_queries.session_window(conn, session_id)
    if window is None:
        raise ReportError(f"no session {session_id} in the database")
    market_set, started, ended = window
    return collect(url, market_set, started, ended + timedelta(milliseconds=1), session_id=session_id)
