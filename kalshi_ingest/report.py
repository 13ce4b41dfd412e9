"""``kalshi-ingest report``: what traded, how wide and deep the book was, and when the data was incomplete.

The report covers one market set (or every recorded market) over a time range and reads only the report views of
``sql/030-035`` (the same ones users query in psql), so the numbers in the report and in a notebook agree:

* ``kalshi.session_health``, ``kalshi.untrusted_windows``: sessions, incidents and the windows to distrust;
* ``kalshi.trade_bars(...)``: OHLC / VWAP / volume bars; ``kalshi.spread_bars(...)``: bid, ask and spread;
* ``kalshi.depth_over_time``: book depth from the depth summaries; ``kalshi.alerts``: alerts fired;
* ``kalshi.positions_by_market``: our positions and realised P&L (when the account channels were recorded).

:func:`build_report` writes one self-contained HTML file (charts are matplotlib PNGs embedded as base64, no
external files or scripts), :func:`print_report` prints the same tables to the terminal, and
:func:`session_report` is what the ingest flow calls after a session: it builds the report of that session and
returns the file and a short markdown summary for a Prefect artifact.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pandas as pd
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

__all__ = [
    "ReportData",
    "SessionReport",
    "build_report",
    "collect",
    "main",
    "print_report",
    "render_html",
    "report_markdown",
    "report_path",
    "session_report",
]

#: Bar lengths the report chooses from: the shortest that gives at most MAX_BARS bars over the range.
BAR_CHOICES: Final = tuple(timedelta(seconds=s) for s in (1, 5, 10, 15, 30, 60, 300, 900, 1800, 3600, 14400, 86400))
MAX_BARS: Final = 120
#: When no range is given: the last day recorded for the market set (or less, if it recorded less).
DEFAULT_SPAN: Final = timedelta(days=1)
#: Trade bars listed per market in the terminal (the HTML lists them all, folded).
TERMINAL_BARS: Final = 8
#: Markets charted in the HTML (the most traded first); every market stays in the tables. Each chart adds about
#: 150 kB to the file.
MAX_CHARTS: Final = 24

COLORS: Final = {
    "bid": "#1a7f5a", "ask": "#c0392b", "price": "#1f3a93", "spread": "#6c3483", "untrusted": "#e74c3c",
    "volume_yes": "#27ae60", "volume_no": "#e67e22", "grid": "#e5e8ec", "text": "#2c3e50",
}


class ReportError(RuntimeError):
    """Nothing to report (no session, no market, an empty range) or a bad argument; the message says which."""


# ------------------------------------------------------------------------------------------------ data


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
                "spread_mean": _mean(spreads.spread_mean) if len(spreads) else None,
                "places": _places(bars.open, bars.high, bars.low, bars.close, spreads.yes_bid, spreads.yes_ask),
                "recorded": float(done.recorded_seconds.iloc[0]) if len(done) else 0.0,
                "untrusted": float(done.untrusted_seconds.iloc[0]) if len(done) else 0.0,
            })
        return pd.DataFrame(rows)


_SESSIONS_SQL: Final = """
select session_id, market_set, environment, status, status_message, started_at, recorded_until, planned_seconds,
       recorded_seconds, untrusted_seconds, reconnects, gaps, incidents, incidents_never_closed, rows_written,
       rows_spilled, dead_letters, paused_seconds, healthy
from kalshi.session_health
where (%(market_set)s::text is null or market_set = %(market_set)s)
  and started_at < %(end)s and recorded_until > %(start)s
order by started_at
"""

_RANGE_SQL: Final = """
select min(started_at) as first_start, max(coalesce(ended_at, updated_at)) as last_end
from kalshi.sessions
where %(market_set)s::text is null or market_set = %(market_set)s
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


def _frame(conn: psycopg.Connection[Any], statement: str, params: dict[str, Any]) -> pd.DataFrame:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement, params)  # type: ignore[arg-type]  # constant SQL, parameters bound by psycopg
        rows = cur.fetchall()
        columns = [c.name for c in cur.description or ()]
    return pd.DataFrame(rows, columns=columns)


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
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        params: dict[str, Any] = {"market_set": market_set, "session_id": session_id}
        if start is None or end is None:
            first, last = conn.execute(_RANGE_SQL, params).fetchone() or (None, None)
            if last is None:
                what = f"market set {market_set!r}" if market_set else "this database"
                raise ReportError(f"no recording session found for {what}; record one first (kalshi-ingest demo)")
            end = end or last + timedelta(seconds=1)
            start = start or max(first, end - DEFAULT_SPAN)
        if start >= end:
            raise ReportError(f"empty time range: {start.isoformat()} is not before {end.isoformat()}")
        bar = bar or choose_bar(start, end)
        params.update(start=start, end=end, bar=bar)
        markets = [r[0] for r in conn.execute(_MARKETS_SQL, params).fetchall()]
        if not markets and market_set is None:
            markets = [r[0] for r in conn.execute(_TRADED_MARKETS_SQL, params).fetchall()]
        if not markets:
            raise ReportError(f"no market was recorded between {start.isoformat()} and {end.isoformat()}"
                              + (f" for market set {market_set!r}" if market_set else ""))
        params["markets"] = markets
        return ReportData(
            market_set=market_set, start=start, end=end, bar=bar, markets=markets, database=_describe(url),
            sessions=_frame(conn, _SESSIONS_SQL, params), windows=_frame(conn, _WINDOWS_SQL, params),
            completeness=_frame(conn, _COMPLETENESS_SQL, params), bars=_frame(conn, _BARS_SQL, params),
            spreads=_frame(conn, _SPREADS_SQL, params), depth=_frame(conn, _DEPTH_SQL, params),
            alerts=_frame(conn, _ALERTS_SQL, params), positions=_frame(conn, _POSITIONS_SQL, params),
        )


def _describe(url: str) -> str:
    """``db on host:port`` without user or password."""
    params = conninfo_to_dict(url)
    return f"{params.get('dbname', '?')} on {params.get('host', 'localhost')}:{params.get('port', 5432)}"


# ------------------------------------------------------------------------------------------------ formatting


def _mean(values: pd.Series) -> Decimal | None:
    present = [Decimal(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(present, Decimal(0)) / len(present) if present else None


def _price(value: Any, places: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{Decimal(value):.{places}f}"


def _places(*columns: pd.Series) -> int:
    """4 decimals when any price of the columns is sub-penny (tapered markets), else 2."""
    for column in columns:
        for value in column:
            if value is not None and not (isinstance(value, float) and math.isnan(value)) \
                    and Decimal(value) % Decimal("0.01"):
                return 4
    return 2


def _cents(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    cents = Decimal(value) * 100
    return f"{cents:.2f}¢".replace(".00¢", "¢")


def _count(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    number = Decimal(value)
    return f"{number:,.0f}" if number == number.to_integral_value() else f"{number:,.2f}"


def _money(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    number = Decimal(value)
    return f"{'-' if number < 0 else ''}${abs(number):,.2f}"


def _seconds(value: Any) -> str:
    seconds = float(value or 0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _text(value: Any) -> str:
    """A text cell: '–' for a missing value (None, or NaN/NaT from pandas)."""
    return "–" if value is None or pd.isna(value) else str(value)


def _time(value: Any, *, ms: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    at = pd.Timestamp(value).tz_convert("UTC")
    return at.strftime("%H:%M:%S.%f")[:-3] if ms else at.strftime("%Y-%m-%d %H:%M:%S")


def _span(bar: timedelta) -> str:
    seconds = int(bar.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


# ------------------------------------------------------------------------------------------------ charts


def _untrusted_spans(data: ReportData, market: str) -> list[tuple[datetime, datetime]]:
    windows = data.windows[data.windows.market_ticker == market]
    return [(max(w.started_at, data.start), min(w.ended_at, data.end)) for w in windows.itertuples()]


def _holes(data: ReportData, market: str) -> list[tuple[datetime, datetime]]:
    """Windows in which nobody was recording the market: lines must not be drawn across them."""
    windows = data.windows[(data.windows.market_ticker == market) & (data.windows.kind == "uncovered")]
    return [(w.started_at, w.ended_at) for w in windows.itertuples()]


def _broken(times: list[Any], values: list[float], holes: list[tuple[datetime, datetime]]) -> tuple[list[Any], list[float]]:
    """``times``/``values`` of a step line with a NaN at the start of every hole, so the line stops there instead of
    carrying the last value across time nobody recorded."""
    if not holes:
        return times, values
    points = sorted([*zip(times, values, strict=True), *((start, math.nan) for start, _ in holes)],
                    key=lambda p: p[0])
    return [p[0] for p in points], [p[1] for p in points]


def market_chart(data: ReportData, market: str) -> bytes:
    """PNG: price (bid/ask band, VWAP, trades), volume by taker side, spread, and depth, on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    bars = data.bars[data.bars.market_ticker == market]
    spreads = data.spreads[data.spreads.market_ticker == market]
    depth = data.depth[data.depth.market_ticker == market]
    fig, axes = plt.subplots(4, 1, figsize=(11, 8.2), sharex=True,
                             gridspec_kw={"height_ratios": [3.2, 1.3, 1.3, 2.0], "hspace": 0.12})
    price_ax, volume_ax, spread_ax, depth_ax = axes
    for ax in axes:
        ax.set_facecolor("white")
        ax.grid(True, color=COLORS["grid"], linewidth=0.8)
        ax.tick_params(colors=COLORS["text"], labelsize=8.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color("#b0b8c1")
        for start, end in _untrusted_spans(data, market):
            ax.axvspan(start, end if end > start else start + timedelta(milliseconds=200), color=COLORS["untrusted"],
                       alpha=0.18, linewidth=0, zorder=0)

    holes = _holes(data, market)
    if len(spreads):
        raw_times = list(spreads.bar_start) + [spreads.bar_end.iloc[-1]]
        times, bid = _broken(raw_times, [_f(v) for v in spreads.yes_bid] + [_f(spreads.yes_bid.iloc[-1])], holes)
        _, ask = _broken(raw_times, [_f(v) for v in spreads.yes_ask] + [_f(spreads.yes_ask.iloc[-1])], holes)
        _, spread = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread) + [spreads.spread.iloc[-1]]], holes)
        _, low = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread_min) + [spreads.spread_min.iloc[-1]]],
                         holes)
        _, high = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread_max) + [spreads.spread_max.iloc[-1]]],
                          holes)
        price_ax.fill_between(times, bid, ask, step="post", color=COLORS["price"], alpha=0.08, label="bid–ask")
        price_ax.step(times, ask, where="post", color=COLORS["ask"], linewidth=1.1, label="best ask (YES)")
        price_ax.step(times, bid, where="post", color=COLORS["bid"], linewidth=1.1, label="best bid (YES)")
        spread_ax.step(times, spread, where="post", color=COLORS["spread"], linewidth=1.2)
        spread_ax.fill_between(times, low, high, step="post", color=COLORS["spread"], alpha=0.12, linewidth=0)
    if len(bars):
        mids = [b + data.bar / 2 for b in bars.bar_start]
        price_ax.vlines(mids, [_f(v) for v in bars.low], [_f(v) for v in bars.high], color=COLORS["price"],
                        linewidth=1.0, alpha=0.55)
        price_ax.plot(mids, [_f(v) for v in bars.vwap], "o-", color=COLORS["price"], markersize=3.2, linewidth=1.0,
                      label="trade VWAP (high–low)")
        width = data.bar * 0.8
        yes = [_f(v) for v in bars.yes_taker_volume]
        no = [_f(v) for v in bars.no_taker_volume]
        volume_ax.bar(list(bars.bar_start), yes, width=width, align="edge", color=COLORS["volume_yes"],
                      label="taker bought YES")
        volume_ax.bar(list(bars.bar_start), no, width=width, align="edge", bottom=yes, color=COLORS["volume_no"],
                      label="taker bought NO")
    if len(depth):
        distances = sorted(set(depth.distance))
        shown = [distances[0], distances[-1]] if len(distances) > 1 else distances
        for distance, style in zip(shown, ("-", "--"), strict=False):
            rows = depth[depth.distance == distance]
            label = "at the touch" if distance == 0 else f"within {_cents(distance)}"
            raw_times = [*rows.bucket_start, rows.bucket_end.iloc[-1]]
            times, bid_depth = _broken(raw_times, [_f(v) for v in [*rows.bid_depth, rows.bid_depth.iloc[-1]]], holes)
            _, ask_depth = _broken(raw_times, [-_f(v) for v in [*rows.ask_depth, rows.ask_depth.iloc[-1]]], holes)
            depth_ax.step(times, bid_depth, where="post", linestyle=style, color=COLORS["bid"], linewidth=1.2,
                          label=f"bid depth {label}")
            depth_ax.step(times, ask_depth, where="post", linestyle=style, color=COLORS["ask"], linewidth=1.2,
                          label=f"offer depth {label}")
        depth_ax.axhline(0, color="#7f8c8d", linewidth=0.8)
        depth_ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
    else:
        depth_ax.text(0.5, 0.5, "no depth summary for this range (computed after each session)",
                      transform=depth_ax.transAxes, ha="center", va="center", color="#7f8c8d", fontsize=9)

    price_ax.set_ylabel("YES price ($)", color=COLORS["text"], fontsize=9)
    volume_ax.set_ylabel("volume", color=COLORS["text"], fontsize=9)
    spread_ax.set_ylabel("spread (¢)", color=COLORS["text"], fontsize=9)
    depth_ax.set_ylabel("depth", color=COLORS["text"], fontsize=9)
    if len(depth):
        depth_ax.text(0.005, 0.97, "bids ↑", transform=depth_ax.transAxes, va="top", fontsize=8, color=COLORS["bid"])
        depth_ax.text(0.005, 0.03, "offers ↓", transform=depth_ax.transAxes, va="bottom", fontsize=8,
                      color=COLORS["ask"])
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    if _untrusted_spans(data, market):
        from matplotlib.patches import Patch

        handles.append(Patch(color=COLORS["untrusted"], alpha=0.25))
        labels.append("data incomplete (gap, disconnect, or not recorded)")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.895), ncol=5, fontsize=8, frameon=False)
    depth_ax.set_xlim(data.start, data.end)
    locator = mdates.AutoDateLocator(tz=UTC)
    depth_ax.xaxis.set_major_locator(locator)
    depth_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    depth_ax.set_xlabel("UTC", color=COLORS["text"], fontsize=8.5)
    fig.align_ylabels(axes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def _f(value: Any) -> float:
    return float("nan") if value is None else float(value)


# ------------------------------------------------------------------------------------------------ HTML

_CSS: Final = """
:root { --ink: #2c3e50; --muted: #6b7785; --line: #e3e7ec; --bg: #f5f7fa; --good: #1a7f5a; --bad: #c0392b;
        --warn: #b9770e; --accent: #1f3a93; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #16233b; color: #fff; padding: 26px 40px 22px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header .sub { color: #b8c4d6; font-size: 13px; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 40px 60px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px; margin: 0 0 22px; }
h2 { font-size: 17px; margin: 0 0 4px; }
h3 { font-size: 15px; margin: 0 0 10px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
p.lead { color: var(--muted); margin: 0 0 14px; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 14px; margin: 0 0 22px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 24px; font-weight: 600; margin-top: 2px; }
.card .note { color: var(--muted); font-size: 12px; }
.good { color: var(--good); } .bad { color: var(--bad); } .warn { color: var(--warn); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px; border-bottom: 2px solid var(--line);
     padding: 6px 10px; white-space: nowrap; }
td { padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:hover td { background: #fafbfc; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11.5px; font-weight: 600; }
.badge.good { background: #e3f4ec; } .badge.bad { background: #fbe5e3; } .badge.warn { background: #fcf1dc; }
.bar { background: #edf0f3; border-radius: 4px; height: 8px; width: 120px; display: inline-block;
       vertical-align: middle; overflow: hidden; margin-right: 8px; }
.bar > span { display: block; height: 100%; background: var(--good); }
.bar > span.warn { background: var(--warn); } .bar > span.bad { background: var(--bad); }
.chart { width: 100%; border: 1px solid var(--line); border-radius: 8px; margin: 6px 0 10px; }
details { margin-top: 8px; } summary { cursor: pointer; color: var(--accent); font-size: 13px; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 10px; }
code { background: #eef1f5; padding: 1px 5px; border-radius: 4px; font-size: 12px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """HTML table; headers are (title, numeric); cells are already-escaped HTML."""
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f'<th class="num">{_e(h)}</th>' if num else f"<th>{_e(h)}</th>" for h, num in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>"
                         for c, (_, num) in zip(row, headers, strict=True)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _completeness_bar(trusted: float, recorded: float) -> str:
    share = trusted / recorded if recorded else 0.0
    kind = "good" if share >= 0.999 else "warn" if share >= 0.95 else "bad"
    return (f'<span class="bar"><span class="{kind}" style="width:{100 * share:.1f}%"></span></span>'
            f'<span class="{kind}">{100 * share:.2f}%</span>')


def render_html(data: ReportData, *, max_charts: int = MAX_CHARTS) -> str:
    """The whole report as one HTML document (charts embedded as base64 PNG, for the ``max_charts`` markets with
    the most volume)."""
    summary = data.market_summary()
    range_seconds = (data.end - data.start).total_seconds()
    total_trades = int(summary.trades.sum()) if len(summary) else 0
    total_volume = summary.volume.sum() if len(summary) else 0
    recorded = summary.recorded.sum() if len(summary) else 0.0
    untrusted = summary.untrusted.sum() if len(summary) else 0.0
    unhealthy = int((~data.sessions.healthy.astype(bool)).sum()) if len(data.sessions) else 0
    trusted_share = (recorded - untrusted) / recorded if recorded else 0.0
    cards = [
        ("Markets", f"{len(data.markets)}", f"{len(data.sessions)} recording session(s)"),
        ("Trades", f"{total_trades:,}", f"{_count(total_volume)} contracts"),
        ("Data trusted", f"{100 * trusted_share:.2f}%",
         f"per market: {_seconds(untrusted / max(len(data.markets), 1))} incomplete of "
         f"{_seconds(recorded / max(len(data.markets), 1))} recorded"),
        ("Sessions unhealthy", f"{unhealthy}", "see Data completeness"),
        ("Alerts fired", f"{len(data.alerts)}", f"{int(data.alerts.resolved_at.isna().sum()) if len(data.alerts) else 0}"
                                               " still open"),
    ]
    card_html = "".join(
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value {_card_kind(label, value)}">{_e(value)}</div><div class="note">{_e(note)}</div></div>'
        for label, value, note in cards)

    overview = _table(
        [("Market", False), ("Trades", True), ("Volume", True), ("VWAP", True), ("Open", True), ("High", True),
         ("Low", True), ("Close", True), ("Bid", True), ("Ask", True), ("Spread", True), ("Mean spread", True),
         ("Data trusted", False)],
        [[f'<span class="mono">{_e(r.market)}</span>', _count(r.trades), _count(r.volume), _price(r.vwap, 4),
          _price(r.open, r.places), _price(r.high, r.places), _price(r.low, r.places), _price(r.close, r.places),
          _price(r.bid, r.places), _price(r.ask, r.places),
          _cents(r.spread), _cents(r.spread_mean), _completeness_bar(r.recorded - r.untrusted, r.recorded)]
         for r in summary.itertuples()],
        empty="No market in range.")

    sessions = _table(
        [("Session", False), ("Status", False), ("Started", False), ("Recorded", True), ("Incomplete", True),
         ("Reconnects", True), ("Gaps", True), ("Rows written", True), ("Spilled", True), ("Dead letters", True),
         ("Verdict", False)],
        [[f'<span class="mono">{_e(str(s.session_id)[:8])}</span>', _e(s.status), _e(_time(s.started_at)),
          _seconds(s.recorded_seconds), _seconds(s.untrusted_seconds), _count(s.reconnects), _count(s.gaps),
          _count(s.rows_written), _count(s.rows_spilled), _count(s.dead_letters),
          _badge("healthy", "good") if s.healthy else _badge("check", "bad")]
         for s in data.sessions.itertuples()],
        empty="No session recorded in this range.")

    windows = _table(
        [("What happened", False), ("Markets", False), ("From", False), ("To", False), ("Length", True),
         ("Repaired by", False)],
        [[_e(_KIND_TEXT.get(w["kind"], w["kind"])), f'<span class="mono">{_e(w["affected"])}</span>',
          _e(_time(w["started_at"], ms=True)), _e(_time(w["ended_at"], ms=True)), _seconds(w["seconds"]),
          _badge("never repaired", "bad") if w["never_closed"]
          else _e(_OUTCOME_TEXT.get(_text(w["outcome"]), _text(w["outcome"])))]
         for w in data.incidents()],
        empty="No incident: every recorded second is trustworthy.")

    alerts = _table(
        [("Fired", False), ("Rule", False), ("Market", False), ("Value", True), ("Threshold", True), ("Message", False),
         ("State", False)],
        [[_e(_time(a.fired_at)), _e(a.rule), f'<span class="mono">{_e(_text(a.market_ticker))}</span>',
          _e(_number(a.value)), _e(_number(a.threshold)), _e(a.message),
          _badge("open", "warn") if pd.isna(a.resolved_at)
          else _badge(f"resolved {_time(a.resolved_at)}", "good")]
         for a in data.alerts.itertuples()],
        empty="No alert fired in this range.")

    market_sections = []
    by_volume = sorted(data.markets, key=lambda m: -float(summary.loc[summary.market == m, "volume"].iloc[0] or 0))
    charted = set(by_volume[:max_charts])
    for market in (m for m in data.markets if m in charted):
        chart = base64.b64encode(market_chart(data, market)).decode()
        bars = data.bars[data.bars.market_ticker == market]
        places = _places(bars.open, bars.high, bars.low, bars.close)
        bar_table = _table(
            [("Bar start", False), ("Open", True), ("High", True), ("Low", True), ("Close", True), ("VWAP", True),
             ("Volume", True), ("Trades", True), ("Complete", False)],
            [[_e(_time(b.bar_start, ms=True)), _price(b.open, places), _price(b.high, places), _price(b.low, places),
              _price(b.close, places), _price(b.vwap, 4), _count(b.volume), _count(b.trades),
              _badge("yes", "good") if b.trusted else _badge("incomplete", "bad")]
             for b in bars.itertuples()],
            empty="No trade in range.")
        market_sections.append(
            f'<section><h3>{_e(market)}</h3>'
            f'<img class="chart" alt="price, volume, spread and depth of {_e(market)}" '
            f'src="data:image/png;base64,{chart}">'
            f"<details><summary>{len(bars)} trade bars of {_e(_span(data.bar))}</summary>{bar_table}</details>"
            "</section>")

    positions = ""
    if len(data.positions):
        positions = "<section><h2>Account: positions and realised P&amp;L</h2>" \
            '<p class="lead">From our recorded fills (average cost, all time), next to the last position the ' \
            "exchange reported.</p>" + _table(
                [("Market", False), ("Fills", True), ("Position", True), ("Avg price", True), ("Realised P&L", True),
                 ("Fees", True), ("Net", True), ("Exchange agrees", False)],
                [[f'<span class="mono">{_e(p.market_ticker)}</span>', _count(p.fills),
                  _e(f"{_count(abs(p.position))} {p.side_held or ''}".strip()), _price(p.average_price, 4),
                  _money(p.realized_pnl), _money(p.fees), _money(p.realized_pnl_after_fees),
                  _badge("yes", "good") if p.position_matches_exchange else _badge("no", "bad")]
                 for p in data.positions.itertuples()],
                empty="") + "</section>"

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)} · Kalshi market data report</title><style>{_CSS}</style></head>
<body>
<header><h1>{_e(data.title)}</h1>
<div class="sub">{_e(_time(data.start))} → {_e(_time(data.end))} UTC ({_e(_seconds(range_seconds))}) ·
{len(data.markets)} markets · {_e(_span(data.bar))} bars · database {_e(data.database)} ·
generated {_e(_time(data.generated_at))} UTC</div></header>
<main>
<div class="cards">{card_html}</div>
<section><h2>Markets</h2><p class="lead">Prices are YES prices in dollars. VWAP, OHLC and volume over the whole range
from <code>kalshi.trade_bars</code>; bid, ask and spread are the last top of book (<code>kalshi.spread_bars</code>);
"data trusted" is the share of the time from the first to the last recorded instant with no gap, disconnect or
time in which nobody was recording (between sessions, before a new market was subscribed).</p>{overview}</section>
<section><h2>Data completeness</h2><p class="lead">Recording sessions (<code>kalshi.session_health</code>) and the
windows in which data may be missing (<code>kalshi.untrusted_windows</code>). Bars and books inside these windows are
flagged as incomplete; the red bands in the charts mark them.</p>{sessions}<h2 style="margin-top:18px">Incidents</h2>
{windows}</section>
<section><h2>Alerts fired</h2><p class="lead">Alert episodes of the market set's rules (<code>kalshi.alerts</code>).</p>
{alerts}</section>
<h2 style="margin:26px 0 10px">Price, volume, spread and depth by market</h2>
{_not_charted(len(data.markets) - len(charted))}{"".join(market_sections)}
{positions}
<footer>Kalshi market data recorder · the tables come from the report views in schema <code>kalshi</code>
(see docs/queries.md) and can be queried directly with the read-only role <code>kalshi_reader</code>.</footer>
</main></body></html>
"""


def _not_charted(count: int) -> str:
    if count <= 0:
        return ""
    return (f'<p class="lead">Charts of the {count} least traded markets are left out to keep the file small '
            "(they are in the tables; raise --max-charts, or report them with a narrower market set).</p>")


_KIND_TEXT: Final = {
    "gap": "sequence gap (messages lost)", "disconnect": "connection lost", "backpressure": "reading paused",
    "book_inconsistency": "book inconsistent", "stale": "stream silent", "subscription_error": "subscription failed",
    "uncovered": "not recorded",
}
#: How an uncovered window ended (kalshi.uncovered_windows.reason), in the "repaired by" column.
_OUTCOME_TEXT: Final = {"between_sessions": "next session (none was recording)",
                        "before_subscribed": "its first snapshot (market opened mid-session)"}


def _card_kind(label: str, value: str) -> str:
    if label == "Data trusted":
        share = float(value.rstrip("%"))
        return "good" if share >= 99.9 else "warn" if share >= 95 else "bad"
    if label in ("Sessions unhealthy", "Alerts fired"):
        return "good" if value == "0" else "bad" if label == "Sessions unhealthy" else "warn"
    return ""


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{Decimal(value).normalize():f}"


def build_report(url: str, market_set: str | None = None, start: datetime | None = None,
                 end: datetime | None = None, out: Path = Path("kalshi-report.html"), *,
                 bar: timedelta | None = None, max_charts: int = MAX_CHARTS) -> Path:
    """Write the HTML report of ``market_set`` over [start, end) to ``out``; returns the path written.

    See :func:`collect` for the defaults of the range. Raises :class:`ReportError` when there is nothing to report.
    """
    data = collect(url, market_set, start, end, bar=bar)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data, max_charts=max_charts), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------ terminal


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=160)  # a pipe or a log: no terminal width to fit


def print_report(data: ReportData, console: Console | None = None) -> None:
    """The report's tables in the terminal (rich)."""
    console = console or _console()
    console.rule(f"[bold]{data.title}[/] · {_time(data.start)} → {_time(data.end)} UTC · {_span(data.bar)} bars")
    overview = Table(title="Markets (YES prices in dollars)", title_justify="left")
    for name in ("market", "trades", "volume", "VWAP", "open", "high", "low", "close", "bid", "ask", "spread",
                 "trusted"):
        overview.add_column(name, justify="left" if name == "market" else "right", no_wrap=name == "market")
    for r in data.market_summary().itertuples():
        share = (r.recorded - r.untrusted) / r.recorded if r.recorded else 0.0
        style = "green" if share >= 0.999 else "yellow" if share >= 0.95 else "red"
        overview.add_row(r.market, _count(r.trades), _count(r.volume), _price(r.vwap, 4), _price(r.open, r.places),
                         _price(r.high, r.places), _price(r.low, r.places), _price(r.close, r.places),
                         _price(r.bid, r.places), _price(r.ask, r.places), _cents(r.spread),
                         f"[{style}]{100 * share:.2f}%[/]")
    console.print(overview)

    sessions = Table(title="Data completeness: sessions", title_justify="left")
    for name in ("session", "status", "started", "recorded", "incomplete", "reconnects", "gaps", "rows", "healthy"):
        sessions.add_column(name, justify="left" if name in ("session", "status", "started") else "right")
    for s in data.sessions.itertuples():
        sessions.add_row(str(s.session_id)[:8], s.status, _time(s.started_at), _seconds(s.recorded_seconds),
                         _seconds(s.untrusted_seconds), _count(s.reconnects), _count(s.gaps), _count(s.rows_written),
                         "[green]yes[/]" if s.healthy else "[red]no[/]")
    console.print(sessions)

    if len(data.windows):
        windows = Table(title="Incidents: data incomplete", title_justify="left")
        for name in ("what", "markets", "from", "to", "length", "repaired by"):
            windows.add_column(name, no_wrap=name != "markets")
        for w in data.incidents():
            windows.add_row(_KIND_TEXT.get(w["kind"], w["kind"]), w["affected"], _time(w["started_at"], ms=True),
                            _time(w["ended_at"], ms=True), _seconds(w["seconds"]),
                            "[red]never[/]" if w["never_closed"]
                            else _OUTCOME_TEXT.get(_text(w["outcome"]), _text(w["outcome"])))
        console.print(windows)
    else:
        console.print("[green]No incident: every recorded second is trustworthy.[/]")

    for market in data.markets:
        bars = data.bars[data.bars.market_ticker == market].tail(TERMINAL_BARS)
        table = Table(title=f"{market}: last {len(bars)} trade bars of {_span(data.bar)}", title_justify="left")
        for name in ("bar start", "open", "high", "low", "close", "VWAP", "volume", "trades", "complete"):
            table.add_column(name, justify="left" if name == "bar start" else "right")
        places = _places(bars.open, bars.high, bars.low, bars.close)
        for b in bars.itertuples():
            table.add_row(_time(b.bar_start, ms=True), _price(b.open, places), _price(b.high, places),
                          _price(b.low, places), _price(b.close, places), _price(b.vwap, 4), _count(b.volume),
                          _count(b.trades),
                          "[green]yes[/]" if b.trusted else "[red]no[/]")
        console.print(table)

    alerts = Table(title="Alerts fired", title_justify="left")
    alerts.add_column("fired", no_wrap=True)
    alerts.add_column("kind", no_wrap=True)
    alerts.add_column("message", ratio=1)
    alerts.add_column("state", no_wrap=True)
    for a in data.alerts.itertuples():
        open_ = pd.isna(a.resolved_at)
        alerts.add_row(_time(a.fired_at), a.kind, a.message, "[yellow]open[/]" if open_ else "resolved")
    console.print(alerts if len(data.alerts) else "No alert fired in this range.")

    if len(data.positions):
        positions = Table(title="Account: positions and realised P&L (from fills)", title_justify="left")
        for name in ("market", "fills", "position", "avg price", "realised", "fees", "net", "exchange agrees"):
            positions.add_column(name, justify="left" if name == "market" else "right", no_wrap=name == "market")
        for p in data.positions.itertuples():
            positions.add_row(p.market_ticker, _count(p.fills), f"{_count(abs(p.position))} {p.side_held or ''}",
                              _price(p.average_price, 4), _money(p.realized_pnl), _money(p.fees),
                              _money(p.realized_pnl_after_fees), "yes" if p.position_matches_exchange else "[red]no[/]")
        console.print(positions)


# ------------------------------------------------------------------------------------------------ flows


@dataclass(frozen=True)
class SessionReport:
    """What :func:`session_report` made: the HTML file and a markdown summary for a Prefect artifact."""

    path: Path
    markdown: str


def report_markdown(data: ReportData, path: Path | None = None) -> str:
    """A short markdown summary of a report (markets table, completeness, alerts) with the file's location."""
    summary = data.market_summary()
    lines = [f"### {data.title}: {_time(data.start)} → {_time(data.end)} UTC", ""]
    if len(summary):
        recorded = float(summary.recorded.sum())
        lines += [f"**{len(summary)} markets**, **{_count(int(summary.trades.sum()))} trades**, volume "
                  f"**{_count(Decimal(str(summary.volume.sum())))}** contracts; data trusted "
                  f"**{_percent(recorded - float(summary.untrusted.sum()), recorded)}** of the recorded time.", ""]
    if path is not None:  # a file on the host that ran the flow (a file:// link would open the reader's own disk)
        lines += [f"Full report (charts, trade bars, incidents): `{path.resolve()}` on host "
                  f"`{socket.gethostname()}` (the data folder's `reports/`).", ""]
    lines += ["| market | trades | volume | VWAP | close | spread | data trusted |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.market} | {_count(r.trades)} | {_count(r.volume)} | {_price(r.vwap, 4)} "
                     f"| {_price(r.close, r.places)} "
                     f"| {_cents(r.spread)} | {_percent(r.recorded - r.untrusted, r.recorded)} |")
    lines += ["", f"Incidents (data incomplete): {len(data.incidents())}; alerts fired: {len(data.alerts)}."]
    return "\n".join(lines)


def report_path(out_dir: Path, market_set: str, suffix: str) -> Path:
    """``out_dir/report-<market set>-<suffix>.html``, always inside ``out_dir``: the market set (a name from a
    config file or the database) is reduced to letters, digits, ``_`` and ``-``, so ``../../x`` cannot
    write elsewhere."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in market_set)[:64] or "set"
    path = Path(out_dir) / f"report-{safe}-{suffix}.html"
    if path.resolve().parent != Path(out_dir).resolve():
        raise ReportError(f"report file name for market set {market_set!r} would leave {out_dir}")
    return path


def session_report(url: str, session_id: str, out_dir: Path) -> SessionReport:
    """Build the report of one recording session (its market set, its window) into ``out_dir``.

    This is what the ingest flow calls after a session; publish ``markdown`` with
    ``prefect.artifacts.create_markdown_artifact`` (it links to ``path``).
    """
    with psycopg.connect(url) as conn:
        row = conn.execute("select market_set, started_at, coalesce(ended_at, updated_at) from kalshi.sessions "
                           "where session_id = %s", (session_id,)).fetchone()
    if row is None:
        raise ReportError(f"no session {session_id} in the database")
    market_set, started, ended = row
    data = collect(url, market_set, started, ended + timedelta(milliseconds=1), session_id=session_id)
    path = report_path(out_dir, market_set, f"{started:%Y%m%dT%H%M%S}-{str(session_id)[:8]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return SessionReport(path=path, markdown=report_markdown(data, path))


# ------------------------------------------------------------------------------------------------ CLI

_UNIT: Final = r"(ms|min|s|m|h|d)"
_RELATIVE: Final = re.compile(r"^-(\d+(?:\.\d+)?)\s*" + _UNIT + "$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it has an offset), ``now``, or a relative time such as ``-2h``/``-30min``."""
    now = now or datetime.now(UTC)
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-25T10:00), 'now' or a relative time like -2h") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_bar(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*" + _UNIT, text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bar length: use e.g. 500ms, 10s, 1m, 5min, 1h")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kalshi-ingest report",
        description="Report a market set over a time range: an HTML file (charts, tables) and the same tables here.")
    parser.add_argument("market_set", nargs="?", help="market set to report (default: every recorded market)")
    parser.add_argument("--from", dest="start", type=parse_time, metavar="TIME",
                        help="start (ISO 8601 UTC, or relative: -2h); default: a day before --to, or the first session")
    parser.add_argument("--to", dest="end", type=parse_time, metavar="TIME",
                        help="end (ISO 8601 UTC, 'now', or relative); default: when the set last recorded")
    parser.add_argument("--bar", type=parse_bar, help="trade bar length (10s, 1m, 5min, 1h); default: at most "
                        f"{MAX_BARS} bars over the range")
    parser.add_argument("--out", type=Path, help="HTML file to write (default: <data dir>/reports/report-....html)")
    parser.add_argument("--max-charts", type=int, default=MAX_CHARTS,
                        help=f"chart at most this many markets, the most traded (default {MAX_CHARTS})")
    parser.add_argument("--no-html", action="store_true", help="only print the tables")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")
    parser.add_argument("--database-url", help="database to read (default: DATABASE_URL, or the embedded database)")
    return parser


def _join_relative_times(argv: list[str]) -> list[str]:
    """``--from -2h`` -> ``--from=-2h``: argparse would read ``-2h`` as an option."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in ("--from", "--to") and _RELATIVE.match(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: list[str] | None = None) -> int:
    """``kalshi-ingest report [MARKET_SET] [--from T] [--to T] [--bar 1m] [--out FILE]``; returns the exit code."""
    args = _parser().parse_args(_join_relative_times(sys.argv[1:] if argv is None else argv))
    console = _console()
    from kalshi_ingest.settings import Settings

    settings = Settings()
    if args.database_url:
        url = args.database_url
    else:
        from kalshi_store.embedded import ensure_database

        url = ensure_database(settings.database(), settings.data_dir)
    try:
        data = collect(url, args.market_set, args.start, args.end, bar=args.bar)
    except ReportError as exc:
        console.print(f"[red]report: {exc}[/]")
        return 2
    if not args.quiet:
        print_report(data, console)
    if not args.no_html:
        out: Path = args.out or report_path(settings.data_dir / "reports", args.market_set or "all",
                                            f"{data.start:%Y%m%dT%H%M%S}-{data.end:%Y%m%dT%H%M%S}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(data, max_charts=args.max_charts), encoding="utf-8")
        console.print(f"HTML report: [bold]{out}[/] (open it in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
