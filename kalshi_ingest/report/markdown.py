"""The report as a short markdown summary (a Prefect artifact): totals, one row per market, incidents, alerts."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

from kalshi_ingest.report import formatting as fmt
from kalshi_ingest.report.data import ReportData

__all__ = ["report_markdown"]


def report_markdown(data: ReportData, path: Path | None = None) -> str:
    """A short markdown summary of a report (markets table, completeness, alerts) with the file's location."""
    summary = data.market_summary()
    lines = [f"### {data.title}: {fmt.time(data.start)} → {fmt.time(data.end)} UTC", ""]
    if len(summary):
        recorded = float(summary.recorded.sum())
        lines += [f"**{len(summary)} markets**, **{fmt.count(int(summary.trades.sum()))} trades**, volume "
                  f"**{fmt.count(Decimal(str(summary.volume.sum())))}** contracts; data trusted "
                  f"**{fmt.percent(recorded - float(summary.untrusted.sum()), recorded)}** of the recorded time.", ""]
    if path is not None:  # a file on the host that ran the flow (a file:// link would open the reader's own disk)
        lines += [f"Full report (charts, trade bars, incidents): `{path.resolve()}` on host "
                  f"`{socket.gethostname()}` (the data folder's `reports/`).", ""]
    lines += ["| market | trades | volume | VWAP | close | spread | data trusted |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.market} | {fmt.count(r.trades)} | {fmt.count(r.volume)} | {fmt.price(r.vwap, 4)} "
                     f"| {fmt.price(r.close, r.places)} "
                     f"| {fmt.cents(r.spread)} | {fmt.percent(r.recorded - r.untrusted, r.recorded)} |")
    lines += ["", f"Incidents (data incomplete): {len(data.incidents())}; alerts fired: {len(data.alerts)}."]
    return "\n".join(lines)
