"""The report as one self-contained HTML page, rendered from ``templates/report.html.j2`` (package data).

The template autoescapes everything it prints: a cell is a :class:`Cell` (text plus how to show it), never a
fragment of HTML, so a ticker or an alert message from the database cannot inject markup. Charts are matplotlib
PNGs embedded as base64 (no external file or script).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import jinja2
import pandas as pd

from kalshi_ingest.report import formatting as fmt
from kalshi_ingest.report.charts import market_chart
from kalshi_ingest.report.data import ReportData
from kalshi_ingest.report.options import MAX_CHARTS

__all__ = ["MAX_CHARTS", "Cell", "HtmlTable", "render_html", "template_environment"]


@dataclass(frozen=True)
class Cell:
    """One table cell: plain ``text``, in a monospace ``mono`` span, a coloured ``badge`` (``kind``: good, bad,
    warn), or a trusted-share ``bar`` (``share`` from 0 to 1). The template escapes ``text``."""

    text: str = ""
    style: Literal["plain", "mono", "badge", "bar"] = "plain"
    kind: str = ""
    share: float = 0.0


@dataclass(frozen=True)
class HtmlTable:
    """A table: ``headers`` are (title, numeric), numeric columns align right; ``empty`` is shown without rows."""

    headers: Sequence[tuple[str, bool]]
    rows: list[list[Cell]]
    empty: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"a row of {len(row)} cells under {len(self.headers)} headers")


@dataclass(frozen=True)
class MarketSection:
    """One market's section: its chart and its trade bars (folded)."""

    market: str
    chart: str  # base64 PNG
    bar_count: int
    bars: HtmlTable


@dataclass(frozen=True)
class Card:
    """A headline figure at the top of the page; ``kind`` colours the value (good, warn, bad)."""

    label: str
    value: str
    note: str
    kind: str = ""


@cache
def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report's templates (package data, found in an installed wheel too)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("kalshi_ingest.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _plain(value: Any) -> Cell:
    return Cell(str(value))


def _mono(value: Any) -> Cell:
    return Cell(str(value), "mono")


def _badge(text: str, kind: str) -> Cell:
    return Cell(text, "badge", kind)


def _trusted(trusted: float, recorded: float) -> Cell:
    share = trusted / recorded if recorded else 0.0
    return Cell(style="bar", kind=fmt.trusted_kind(share), share=share)


def _card_kind(label: str, value: str) -> str:
    if label == "Data trusted":
        share = float(value.rstrip("%"))
        return "good" if share >= 99.9 else "warn" if share >= 95 else "bad"
    if label in ("Sessions unhealthy", "Alerts fired"):
        return "good" if value == "0" else "bad" if label == "Sessions unhealthy" else "warn"
    return ""


def _cards(data: ReportData, summary: pd.DataFrame) -> list[Card]:
    total_trades = int(summary.trades.sum()) if len(summary) else 0
    total_volume = summary.volume.sum() if len(summary) else 0
    recorded = summary.recorded.sum() if len(summary) else 0.0
    untrusted = summary.untrusted.sum() if len(summary) else 0.0
    unhealthy = int((~data.sessions.healthy.astype(bool)).sum()) if len(data.sessions) else 0
    trusted_share = (recorded - untrusted) / recorded if recorded else 0.0
    still_open = int(data.alerts.resolved_at.isna().sum()) if len(data.alerts) else 0
    per_market = max(len(data.markets), 1)
    cards = [
        ("Markets", f"{len(data.markets)}", f"{len(data.sessions)} recording session(s)"),
        ("Trades", f"{total_trades:,}", f"{fmt.count(total_volume)} contracts"),
        ("Data trusted", f"{100 * trusted_share:.2f}%",
         f"per market: {fmt.seconds(untrusted / per_market)} incomplete of {fmt.seconds(recorded / per_market)} "
         "recorded"),
        ("Sessions unhealthy", f"{unhealthy}", "see Data completeness"),
        ("Alerts fired", f"{len(data.alerts)}", f"{still_open} still open"),
    ]
    return [Card(label, value, note, _card_kind(label, value)) for label, value, note in cards]


def _overview(summary: pd.DataFrame) -> HtmlTable:
    return HtmlTable(
        [("Market", False), ("Trades", True), ("Volume", True), ("VWAP", True), ("Open", True), ("High", True),
         ("Low", True), ("Close", True), ("Bid", True), ("Ask", True), ("Spread", True), ("Mean spread", True),
         ("Data trusted", False)],
        [[_mono(r.market), *map(_plain, (
            fmt.count(r.trades), fmt.count(r.volume), fmt.price(r.vwap, 4), fmt.price(r.open, r.places),
            fmt.price(r.high, r.places), fmt.price(r.low, r.places), fmt.price(r.close, r.places),
            fmt.price(r.bid, r.places), fmt.price(r.ask, r.places), fmt.cents(r.spread), fmt.cents(r.spread_mean))),
          _trusted(r.recorded - r.untrusted, r.recorded)]
         for r in summary.itertuples()],
        empty="No market in range.")


def _sessions(data: ReportData) -> HtmlTable:
    return HtmlTable(
        [("Session", False), ("Status", False), ("Started", False), ("Recorded", True), ("Incomplete", True),
         ("Reconnects", True), ("Gaps", True), ("Rows written", True), ("Spilled", True), ("Dead letters", True),
         ("Verdict", False)],
        [[_mono(str(s.session_id)[:8]), *map(_plain, (
            s.status, fmt.time(s.started_at), fmt.seconds(s.recorded_seconds), fmt.seconds(s.untrusted_seconds),
            fmt.count(s.reconnects), fmt.count(s.gaps), fmt.count(s.rows_written), fmt.count(s.rows_spilled),
            fmt.count(s.dead_letters))),
          _badge("healthy", "good") if s.healthy else _badge("check", "bad")]
         for s in data.sessions.itertuples()],
        empty="No session recorded in this range.")


def _incidents(data: ReportData) -> HtmlTable:
    return HtmlTable(
        [("What happened", False), ("Markets", False), ("From", False), ("To", False), ("Length", True),
         ("Repaired by", False)],
        [[_plain(fmt.kind_text(w["kind"])), _mono(w["affected"]), _plain(fmt.time(w["started_at"], ms=True)),
          _plain(fmt.time(w["ended_at"], ms=True)), _plain(fmt.seconds(w["seconds"])),
          _badge("never repaired", "bad") if w["never_closed"] else _plain(fmt.outcome_text(w["outcome"]))]
         for w in data.incidents()],
        empty="No incident: every recorded second is trustworthy.")


def _alerts(data: ReportData) -> HtmlTable:
    return HtmlTable(
        [("Fired", False), ("Rule", False), ("Market", False), ("Value", True), ("Threshold", True), ("Message", False),
         ("State", False)],
        [[_plain(fmt.time(a.fired_at)), _plain(a.rule), _mono(fmt.text(a.market_ticker)), _plain(fmt.number(a.value)),
          _plain(fmt.number(a.threshold)), _plain(a.message),
          _badge("open", "warn") if pd.isna(a.resolved_at) else _badge(f"resolved {fmt.time(a.resolved_at)}", "good")]
         for a in data.alerts.itertuples()],
        empty="No alert fired in this range.")


def _positions(data: ReportData) -> HtmlTable:
    return HtmlTable(
        [("Market", False), ("Fills", True), ("Position", True), ("Avg price", True), ("Realised P&L", True),
         ("Fees", True), ("Net", True), ("Exchange agrees", False)],
        [[_mono(p.market_ticker), _plain(fmt.count(p.fills)),
          _plain(f"{fmt.count(abs(p.position))} {p.side_held or ''}".strip()), *map(_plain, (
              fmt.price(p.average_price, 4), fmt.money(p.realized_pnl), fmt.money(p.fees),
              fmt.money(p.realized_pnl_after_fees))),
          _badge("yes", "good") if p.position_matches_exchange else _badge("no", "bad")]
         for p in data.positions.itertuples()])


def _market_sections(data: ReportData, summary: pd.DataFrame, max_charts: int) -> list[MarketSection]:
    by_volume = sorted(data.markets, key=lambda m: -float(summary.loc[summary.market == m, "volume"].iloc[0] or 0))
    charted = set(by_volume[:max_charts])
    sections = []
    for market in (m for m in data.markets if m in charted):
        bars = data.bars[data.bars.market_ticker == market]
        places = fmt.places(bars.open, bars.high, bars.low, bars.close)
        table = HtmlTable(
            [("Bar start", False), ("Open", True), ("High", True), ("Low", True), ("Close", True), ("VWAP", True),
             ("Volume", True), ("Trades", True), ("Complete", False)],
            [[*map(_plain, (fmt.time(b.bar_start, ms=True), fmt.price(b.open, places), fmt.price(b.high, places),
                            fmt.price(b.low, places), fmt.price(b.close, places), fmt.price(b.vwap, 4),
                            fmt.count(b.volume), fmt.count(b.trades))),
              _badge("yes", "good") if b.trusted else _badge("incomplete", "bad")]
             for b in bars.itertuples()],
            empty="No trade in range.")
        sections.append(MarketSection(market=market, chart=base64.b64encode(market_chart(data, market)).decode(),
                                      bar_count=len(bars), bars=table))
    return sections


def render_html(data: ReportData, *, max_charts: int = MAX_CHARTS) -> str:
    """The whole report as one HTML document (charts embedded as base64 PNG, for the ``max_charts`` markets with
    the most volume)."""
    summary = data.market_summary()
    sections = _market_sections(data, summary, max_charts)
    return template_environment().get_template("report.html.j2").render(
        title=data.title,
        start=fmt.time(data.start), end=fmt.time(data.end),
        length=fmt.seconds((data.end - data.start).total_seconds()),
        market_count=len(data.markets), bar=fmt.span(data.bar), database=data.database,
        generated=fmt.time(data.generated_at),
        cards=_cards(data, summary), overview=_overview(summary), sessions=_sessions(data),
        incidents=_incidents(data), alerts=_alerts(data),
        not_charted=len(data.markets) - len(sections), markets=sections,
        positions=_positions(data) if len(data.positions) else None,
    )
