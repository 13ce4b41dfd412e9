"""What a person looking at a flow run in the Prefect UI reads: the session markdown, the live progress line."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kalshi_ingest.alerts import Alert
from kalshi_ingest.session import Progress, SessionSummary
from kalshi_ingest.summaries import fixed

#: Markets named in the session artifact (and depth rows shown); the rest are counted ("+k more").
MARKETS_SHOWN = 10
#: Markets named in the session artifact's market list (a paragraph, so it wraps).
MARKETS_LISTED = 200


def list_markets(markets: Sequence[str], shown: int = MARKETS_SHOWN) -> str:
    """``N markets: a, b, c`` in full up to ``shown``, else the first ``shown`` and ``(+k more)``."""
    if not markets:
        return "no market"
    head = ", ".join(markets[:shown])
    more = f", ... (+{len(markets) - shown} more)" if len(markets) > shown else ""
    return f"{len(markets)} market{'s' if len(markets) != 1 else ''}: {head}{more}"


def progress_description(progress: Progress) -> str:
    """The live line of the progress artifact: rows written and message rates (a progress artifact holds a number)."""
    rates = ", ".join(f"{channel} {rate:.1f}/s" for channel, rate in sorted(progress.rates.items()) if rate) or "none"
    lag = "n/a" if progress.lag is None else f"{progress.lag * 1000:.0f} ms"
    return (f"Recording {progress.market_set}: {progress.elapsed:.0f} of {progress.duration:.0f} s; "
            f"{progress.rows_written:,} rows written ({progress.pending_rows:,} pending, {progress.rows_spilled:,} "
            f"spilled); {sum(progress.messages.values()):,} messages, now {sum(progress.rates.values()):.1f}/s "
            f"({rates}); lag {lag}; reconnects {progress.reconnects}, gaps {progress.gaps}")


def final_progress_description(summary: SessionSummary) -> str:
    """The progress artifact's line once the session is closed."""
    seconds = max((summary.ended_at - summary.started_at).total_seconds(), 1e-9)
    messages = sum(summary.messages.values())
    return (f"Session {summary.market_set} {summary.status} after {seconds:.0f} s: "
            f"{sum(summary.rows_written.values()):,} rows written, {summary.rows_spilled:,} spilled; "
            f"{messages:,} messages ({messages / seconds:.1f}/s on average); reconnects {summary.reconnects}, "
            f"gaps {summary.gaps}")


def session_markdown(summary: SessionSummary, depth: pd.DataFrame | None, alerts: Sequence[Alert],
                     problems: Sequence[str], *, report: str | None = None) -> str:
    seconds = (summary.ended_at - summary.started_at).total_seconds()
    lines = [
        f"# Session `{summary.market_set}`: **{summary.status}**",
        "",
        f"{summary.status_message}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| session id | `{summary.session_id}` |",
        f"| environment | {summary.environment} |",
        f"| window | {summary.started_at:%Y-%m-%d %H:%M:%S} - {summary.ended_at:%H:%M:%S} UTC ({seconds:.0f} s) |",
        f"| markets | {_market_counts(summary)} |",
        f"| channels | {', '.join(summary.channels)} |",
        f"| messages | {sum(summary.messages.values()):,} |",
        f"| rows written | {sum(summary.rows_written.values()):,} |",
        f"| rows spilled | {summary.rows_spilled:,} |",
        f"| trades backfilled (REST) | {summary.rest_backfilled:,} |",
        f"| reconnects / gaps (unrecovered) | {summary.reconnects} / {summary.gaps} ({summary.unrecovered_gaps}) |",
    ]
    if report:
        lines.append(f"| HTML report | {report} |")
    lines += ["", "## Markets", "", *_market_lines(summary)]
    lines += [
        "",
        "## Messages by channel",
        "",
        "| channel | messages |",
        "|---|---:|",
        *(f"| {kind} | {count:,} |" for kind, count in sorted(summary.messages.items())),
        "",
        "## Rows written by table",
        "",
        "| table | rows |",
        "|---|---:|",
        *(f"| {table} | {count:,} |" for table, count in sorted(summary.rows_written.items())),
    ]
    if depth is not None and not depth.empty:  # the markets still open at the end (summarise_depth)
        lines += ["", *_depth_section(depth)]
    lines += ["", f"## Alerts fired: {len(alerts)}", ""]
    lines += [f"- **{a.condition.kind}** {a.condition.message}"
              f"{'' if a.notified else f' (not notified: {a.notify_error})'}" for a in alerts]
    if problems:
        lines += ["", "## Problems", "", *(f"- {p}" for p in problems)]
    return "\n".join(lines) + "\n"


def _market_counts(summary: SessionSummary) -> str:
    """The markets row of the figures table: counts only (the names are listed below it, where they can wrap)."""
    parts = [f"{len(summary.markets_at_end)} open at the end"]
    if summary.markets_added:
        parts.append(f"{len(summary.markets_added)} opened during the session")
    if summary.markets_closed:
        parts.append(f"{len(summary.markets_closed)} closed during it")
    return f"{len(summary.markets)} recorded ({', '.join(parts)})"


def _market_lines(summary: SessionSummary) -> list[str]:
    """Every market by name (a table cell does not wrap in the Prefect UI, a paragraph does)."""
    closed = summary.markets_closed
    lines = [f"Open at the end: {list_markets(summary.markets_at_end, shown=MARKETS_LISTED)}."]
    if closed:
        lines += ["", f"Closed during the session (not in the depth table or the alerts): "
                      f"{list_markets(closed, shown=MARKETS_LISTED)}."]
    return lines


def _depth_section(depth: pd.DataFrame) -> list[str]:
    """The book at the end of the session: one row per market, the depth within every distance in columns."""
    newest = depth.groupby("market_ticker")["bucket_start"].transform("max")
    latest = depth[depth["bucket_start"] == newest]
    distances = sorted(latest["distance"].unique())
    markets = sorted(latest["market_ticker"].unique())
    nearest = latest[latest["distance"] == distances[0]].set_index("market_ticker")
    by_distance = latest.set_index(["market_ticker", "distance"])
    lines = ["## Depth at the end of the session", "",
             "Contracts bid / offered within each distance of the touch (YES prices, in dollars); imbalance within "
             f"{fixed(distances[0], 2)}.", "",
             "| market | bid | ask | spread | " + " | ".join(f"depth ±{fixed(d, 2)}" for d in distances)
             + " | imbalance |",
             "|---|---:|---:|---:|" + "---:|" * len(distances) + "---:|"]
    for market in markets[:MARKETS_SHOWN]:
        top = nearest.loc[market]
        cells = [f"{fixed(by_distance.loc[(market, d), 'bid_depth'], 2)} / {fixed(by_distance.loc[(market, d), 'ask_depth'], 2)}"
                 for d in distances]
        lines.append(f"| {market} | {fixed(top.best_bid, 4)} | {fixed(top.best_ask, 4)} | {fixed(top.spread, 4)} | "
                     + " | ".join(cells) + f" | {fixed(top.imbalance, 2, sign=True)} |")
    if len(markets) > MARKETS_SHOWN:
        lines += ["", f"(+{len(markets) - MARKETS_SHOWN} more markets in the depth table artifact)"]
    return lines
