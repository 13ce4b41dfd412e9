"""``kalshi-ingest demo``: embedded PostgreSQL + the local simulator + one real ingest flow run.

Everything runs in this process except PostgreSQL (its own server, in the data dir) and Prefect's
temporary API server (or the one ``PREFECT_API_URL`` points at, where the run then shows in the UI).
The simulator listens on a free loopback port with a freshly generated key; the flow reads it through
the same environment variables a production run uses (``KALSHI_ENV``, ``KALSHI_API_KEY_ID``,
``KALSHI_PRIVATE_KEY_PATH``, ``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table

from kalshi_ingest.session import Progress, progress_listener
from kalshi_ingest.settings import Settings, local_prefect_defaults, redacted
from kalshi_store.session_digest import latest_session_digest


async def run_demo(settings: Settings, *, market_set: str, duration: float, live: bool) -> int:
    from kalshi_store.embedded import ensure_database
    from kalshi_store.migrations import migrate
    from kalshi_ws.simulator import Simulator

    console = Console()
    local_prefect_defaults(settings, quiet=live)
    console.print(f"[bold]kalshi-ingest demo[/]: data in {settings.data_dir}")
    started = time.monotonic()
    url = await asyncio.to_thread(ensure_database, settings.database(), settings.data_dir)
    await asyncio.to_thread(migrate, url)
    console.print(f"PostgreSQL ready ({time.monotonic() - started:.1f} s)")
    # The demo's own simulator keeps its key apart from `kalshi-ingest simulate`'s (settings.simulator_dir), so
    # a demo never makes a run against a running simulator pick a key that simulator does not know.
    async with Simulator(seed=int(time.time()) % 10_000, rate=100.0,
                         data_dir=settings.data_dir / "demo-simulator") as sim:
        console.print(f"simulator on {sim.base_url}: {len(sim.tickers)} markets in series {', '.join(sim.series)}")
        os.environ.update({
            "KALSHI_ENV": sim.base_url, "KALSHI_API_KEY_ID": sim.key_id,
            "KALSHI_PRIVATE_KEY_PATH": str(sim.private_key_path), "DATABASE_URL": url,
            "KALSHI_INGEST_DATA_DIR": str(settings.data_dir), "KALSHI_INGEST_CONFIG": str(settings.config_path),
        })
        from kalshi_flows.ingest import ingest_market_set

        console.print(f"starting flow run ingest-market-set({market_set!r}, {duration:g} s) ...")
        state = await _with_display(console, live, duration, ingest_market_set(
            market_set, duration, return_state=True))
    _closing_summary(console, url, market_set, state, time.monotonic() - started, settings.data_dir / "reports")
    return 0 if state.is_completed() else 1


async def _with_display(console: Console, live: bool, duration: float, run: Any) -> Any:
    latest: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        latest[:] = [progress]
        if not live:
            console.print(progress.line(), markup=False, highlight=False)

    with progress_listener(on_progress):
        if not live:
            return await run
        task = asyncio.ensure_future(run)
        with Live(_panel(None, duration), console=console, refresh_per_second=4, transient=False) as display:
            while not task.done():
                await asyncio.wait({task}, timeout=0.5)
                display.update(_panel(latest[0] if latest else None, duration))
        return task.result()


def _panel(progress: Progress | None, duration: float) -> Panel:
    if progress is None:
        return Panel("connecting (resolving markets, opening the session) ...", title="recording")
    table = Table(box=None, expand=False)
    table.add_column("channel")
    table.add_column("total", justify="right")
    table.add_column("per second", justify="right")
    for kind in sorted(progress.messages):
        table.add_row(kind, str(progress.messages[kind]), f"{progress.rates.get(kind, 0.0):.1f}")
    lag = "n/a" if progress.lag is None else f"{progress.lag * 1000:.0f} ms"
    facts = (f"rows written {progress.rows_written}   spilled {progress.rows_spilled}   lag {lag}   "
             f"reconnects {progress.reconnects}   gaps {progress.gaps}")
    bar = Table.grid(padding=(0, 2))
    bar.add_row(ProgressBar(total=100, completed=progress.fraction * 100, width=60),
                f"{progress.elapsed:.0f} / {progress.duration:.0f} s")
    return Panel(Group(bar, table, facts),
                 title=f"recording {progress.market_set} (session {progress.session_id[:8]})")


def _closing_summary(console: Console, url: str, market_set: str, state: Any, elapsed: float,
                     reports: Path) -> None:
    digest = latest_session_digest(url, market_set)
    if digest is None:
        console.print(f"[red]no session was recorded[/]: {state.name}: {state.message}")
        return
    session = digest.session
    colour = "green" if state.is_completed() else "red"
    console.print(f"\n[bold {colour}]flow run {state.name}[/]: {state.message}")
    recorded = (session.ended_at - session.started_at).total_seconds() if session.ended_at else 0
    console.print(f"session {session.session_id}: status {session.status}, {session.markets} markets, "
                  f"{recorded:.0f} s recorded; reconnects {session.reconnects}, gaps {session.gaps}, "
                  f"rows spilled {session.rows_spilled}; demo took {elapsed:.0f} s")
    rows = Table(title="rows stored by this session")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in digest.rows_per_table.items():
        if count:
            rows.add_row(name, str(count))
    rows.add_row("[bold]total[/]", f"[bold]{sum(digest.rows_per_table.values())}[/]")
    console.print(rows)
    book = Table(title="depth at the end of the session (nearest distance)")
    book.add_column("market", no_wrap=True)
    for column in ("bid", "ask", "spread", "bid depth", "ask depth", "imbalance"):
        book.add_column(column, justify="right")
    for b in digest.depth_at_end():
        book.add_row(b.market_ticker, _text(b.best_bid), _text(b.best_ask), _text(b.spread), f"{b.bid_depth or 0:.0f}",
                     f"{b.ask_depth or 0:.0f}", "" if b.imbalance is None else f"{b.imbalance:+.2f}")
    console.print(book)
    still_open = digest.alerts_still_holding
    console.print(f"new alerts: {len(digest.alerts)}" + (f" ({still_open} alerts of earlier sessions still hold and "
                                                         "were not sent again)" if still_open else ""))
    for alert in digest.alerts:
        console.print(f"  [yellow]{alert.kind}[/] {alert.message}"
                      f"{'' if alert.notified else ' (no notification block configured)'}")
    report = next(reports.glob(f"report-*-{session.session_id[:8]}.html"), None)
    if report is not None:
        console.print(f"\nthe session's report (charts, trade bars, data completeness): {report.resolve().as_uri()}")
    console.print(f"\nexplore the data: psql '{redacted(url)}' (schema kalshi; see README.md, 'Querying the data')")
    console.print("see the run in the Prefect UI: `prefect server start`, export PREFECT_API_URL=http://127.0.0.1:4200/api, "
                  "run the demo again")


def _text(value: object) -> str:
    return "-" if value is None else str(value)
