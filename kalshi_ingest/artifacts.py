"""Markdown for the session artifact: what a person looking at the flow run in the UI needs to know."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from kalshi_ingest.alerts import Alert
from kalshi_ingest.session import SessionSummary


def session_markdown(summary: SessionSummary, depth: pd.DataFrame | None, alerts: Sequence[Alert],
                     problems: Sequence[str]) -> str:
    seconds = (summary.ended_at - summary.started_at).total_seconds()
    lines = [
        f"# Session `{summary.market_set}`: **{summary.status}**",
        "",
        f"{summary.status_message}",
        "",
        "| | |",
        "|---|---|",
        f"| session id | `{summary.session_id}` |",
        f"| environment | {summary.environment} |",
        f"| window | {summary.started_at:%Y-%m-%d %H:%M:%S} - {summary.ended_at:%H:%M:%S} UTC ({seconds:.0f} s) |",
        f"| markets | {len(summary.markets)}: {', '.join(summary.markets[:12])}{' ...' if len(summary.markets) > 12 else ''} |",
        f"| channels | {', '.join(summary.channels)} |",
        f"| messages | {sum(summary.messages.values())} |",
        f"| rows written | {sum(summary.rows_written.values())} |",
        f"| rows spilled | {summary.rows_spilled} |",
        f"| trades backfilled (REST) | {summary.rest_backfilled} |",
        f"| reconnects / gaps (unrecovered) | {summary.reconnects} / {summary.gaps} ({summary.unrecovered_gaps}) |",
        "",
        "## Messages by channel",
        "",
        "| channel | messages |",
        "|---|---|",
        *(f"| {kind} | {count} |" for kind, count in sorted(summary.messages.items())),
        "",
        "## Rows written by table",
        "",
        "| table | rows |",
        "|---|---|",
        *(f"| {table} | {count} |" for table, count in sorted(summary.rows_written.items())),
    ]
    if depth is not None and not depth.empty:
        first = depth[depth["distance"] == depth["distance"].min()]
        latest = first.sort_values("bucket_start").groupby("market_ticker").tail(1)
        lines += ["", f"## Depth at the end of the session (within {first['distance'].iloc[0]} of the touch)", "",
                  "| market | bid | ask | spread | bid depth | ask depth | imbalance |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.market_ticker} | {r.best_bid} | {r.best_ask} | {r.spread} | {r.bid_depth:.0f} | "
                  f"{r.ask_depth:.0f} | {r.imbalance:+.2f} |" for r in latest.itertuples(index=False)]
    lines += ["", f"## Alerts fired: {len(alerts)}", ""]
    lines += [f"- **{a.condition.kind}** {a.condition.message}"
              f"{'' if a.notified else f' (not notified: {a.notify_error})'}" for a in alerts]
    if problems:
        lines += ["", "## Problems", "", *(f"- {p}" for p in problems)]
    return "\n".join(lines) + "\n"
