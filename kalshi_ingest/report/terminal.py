"""The report's tables in a terminal (rich): markets, sessions, incidents, the last trade bars, alerts, positions."""

from __future__ import annotations

from typing import Final

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kalshi_ingest.report import formatting as fmt
from kalshi_ingest.report.data import ReportData

__all__ = ["TERMINAL_BARS", "fitting_console", "print_report"]

#: Trade bars listed per market in the terminal (the HTML lists them all, folded).
TERMINAL_BARS: Final = 8
_STYLE: Final = {"good": "green", "warn": "yellow", "bad": "red"}


def fitting_console() -> Console:
    """A console that fits the terminal; in a pipe or a log (no terminal width to fit), 160 columns."""
    made = Console()
    return made if made.is_terminal else Console(width=160)


def _yes_no(flag: object) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def print_report(data: ReportData, console: Console | None = None) -> None:
    """The report's tables in the terminal. Text from the database (tickers, messages) is printed as it is,
    never read as rich markup."""
    out = console or fitting_console()
    out.rule(f"[bold]{escape(data.title)}[/] · {fmt.time(data.start)} → {fmt.time(data.end)} UTC · "
             f"{fmt.span(data.bar)} bars")
    overview = Table(title="Markets (YES prices in dollars)", title_justify="left")
    for name in ("market", "trades", "volume", "VWAP", "open", "high", "low", "close", "bid", "ask", "spread",
                 "trusted"):
        overview.add_column(name, justify="left" if name == "market" else "right", no_wrap=name == "market")
    for r in data.market_summary().itertuples():
        share = (r.recorded - r.untrusted) / r.recorded if r.recorded else 0.0
        overview.add_row(escape(r.market), fmt.count(r.trades), fmt.count(r.volume), fmt.price(r.vwap, 4),
                         fmt.price(r.open, r.places), fmt.price(r.high, r.places), fmt.price(r.low, r.places),
                         fmt.price(r.close, r.places), fmt.price(r.bid, r.places), fmt.price(r.ask, r.places),
                         fmt.cents(r.spread), f"[{_STYLE[fmt.trusted_kind(share)]}]{100 * share:.2f}%[/]")
    out.print(overview)

    sessions = Table(title="Data completeness: sessions", title_justify="left")
    for name in ("session", "status", "started", "recorded", "incomplete", "reconnects", "gaps", "rows", "healthy"):
        sessions.add_column(name, justify="left" if name in ("session", "status", "started") else "right")
    for s in data.sessions.itertuples():
        sessions.add_row(str(s.session_id)[:8], escape(str(s.status)), fmt.time(s.started_at),
                         fmt.seconds(s.recorded_seconds), fmt.seconds(s.untrusted_seconds), fmt.count(s.reconnects),
                         fmt.count(s.gaps), fmt.count(s.rows_written), _yes_no(s.healthy))
    out.print(sessions)

    if len(data.windows):
        windows = Table(title="Incidents: data incomplete", title_justify="left")
        for name in ("what", "markets", "from", "to", "length", "repaired by"):
            windows.add_column(name, no_wrap=name != "markets")
        for w in data.incidents():
            windows.add_row(escape(fmt.kind_text(w["kind"])), escape(w["affected"]),
                            fmt.time(w["started_at"], ms=True), fmt.time(w["ended_at"], ms=True),
                            fmt.seconds(w["seconds"]),
                            "[red]never[/]" if w["never_closed"] else escape(fmt.outcome_text(w["outcome"])))
        out.print(windows)
    else:
        out.print("[green]No incident: every recorded second is trustworthy.[/]")

    for market in data.markets:
        bars = data.bars[data.bars.market_ticker == market].tail(TERMINAL_BARS)
        table = Table(title=f"{escape(market)}: last {len(bars)} trade bars of {fmt.span(data.bar)}",
                      title_justify="left")
        for name in ("bar start", "open", "high", "low", "close", "VWAP", "volume", "trades", "complete"):
            table.add_column(name, justify="left" if name == "bar start" else "right")
        places = fmt.places(bars.open, bars.high, bars.low, bars.close)
        for b in bars.itertuples():
            table.add_row(fmt.time(b.bar_start, ms=True), fmt.price(b.open, places), fmt.price(b.high, places),
                          fmt.price(b.low, places), fmt.price(b.close, places), fmt.price(b.vwap, 4),
                          fmt.count(b.volume), fmt.count(b.trades), _yes_no(b.trusted))
        out.print(table)

    alerts = Table(title="Alerts fired", title_justify="left")
    alerts.add_column("fired", no_wrap=True)
    alerts.add_column("kind", no_wrap=True)
    alerts.add_column("message", ratio=1)
    alerts.add_column("state", no_wrap=True)
    for a in data.alerts.itertuples():
        alerts.add_row(fmt.time(a.fired_at), escape(str(a.kind)), escape(str(a.message)),
                       "[yellow]open[/]" if pd.isna(a.resolved_at) else "resolved")
    out.print(alerts if len(data.alerts) else "No alert fired in this range.")

    if len(data.positions):
        positions = Table(title="Account: positions and realised P&L (from fills)", title_justify="left")
        for name in ("market", "fills", "position", "avg price", "realised", "fees", "net", "exchange agrees"):
            positions.add_column(name, justify="left" if name == "market" else "right", no_wrap=name == "market")
        for p in data.positions.itertuples():
            positions.add_row(escape(p.market_ticker), fmt.count(p.fills),
                              escape(f"{fmt.count(abs(p.position))} {p.side_held or ''}"),
                              fmt.price(p.average_price, 4), fmt.money(p.realized_pnl), fmt.money(p.fees),
                              fmt.money(p.realized_pnl_after_fees),
                              "yes" if p.position_matches_exchange else "[red]no[/]")
        out.print(positions)
