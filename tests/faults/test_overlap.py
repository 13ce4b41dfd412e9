"""Two sessions of the same market set at once (same database, same spill root): a duplicate is refused; and a
scheduled session starting while the previous one is still flushing (its final batches held up by a lock): every
trade stored once, each session's books equal to the exchange's at its end."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import psycopg
import pytest

from kalshi_ingest.session import DuplicateSession
from kalshi_store.embedded import EmbeddedPostgres
from kalshi_ws.simulator import Simulator

from .harness import (
    Report,
    Window,
    check_books,
    check_dead_letter,
    check_ledger,
    check_trades,
    framed_session,
    last_connection,
    market_set_for,
    random_plan,
    rows,
    run_recording_session,
    settings_for,
    subscribed_everywhere,
    wait_until,
)

pytestmark = pytest.mark.timeout(150)


def _sessions_connected(sim: Simulator, n: int) -> bool:
    return sum(1 for c in sim.connections.values()
               if not c.closed and all(ch in c.by_channel for ch in ("orderbook_delta", "ticker", "trade"))) >= n


async def test_a_second_session_of_one_market_set_is_refused_while_the_first_records(
        sim: Simulator, db_url: str, tmp_path: Path) -> None:
    """Two manual runs of one set started 1.5 s apart: the second would only duplicate the first (issue 10), so it
    does not start; the first records everything, faults included."""
    data = tmp_path / "data"
    settings, market_set = settings_for(sim, data), market_set_for(sim)
    await sim.pause_market_activity()
    before = last_connection(sim)
    a = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=9, progress_interval=3600))
    await wait_until(lambda: subscribed_everywhere(sim, after=before) or a.done(), 20, "session A subscribed")
    window = Window(tape_start=len(sim.model.tape), started=True)
    await sim.resume()
    await asyncio.sleep(1.5)  # B starts 1.5 s into A
    with pytest.raises(DuplicateSession, match="already being recorded"):
        await run_recording_session(settings, market_set, db_url, duration=7, progress_interval=3600)
    assert not _sessions_connected(sim, 2)
    faults_before = len(sim.faults_injected)
    plan = random_plan(17, ["close", "drop", "duplicate", "malformed"], rate=1.0, channel="orderbook_delta")
    plan_task = asyncio.create_task(plan(sim))
    await asyncio.sleep(3.5)
    plan_task.cancel()
    await sim.pause_market_activity()
    window.tape_end = len(sim.model.tape)
    first = await asyncio.wait_for(a, 60)
    window.summaries += [first]
    window.faults += sim.faults_injected[faults_before:]
    report = check_trades(db_url, sim, window)
    check_books(db_url, sim, first.session_id, report=report)
    check_ledger(db_url, sim, window, report=report)
    check_dead_letter(db_url, window, report=report, sim=sim)
    report.assert_clean()
    assert report.trades_expected > 50
    assert report.books_compared + report.books_untrusted_and_ledgered == len(sim.tickers)
    assert rows(db_url, "select count(*) from kalshi.sessions") == [(1,)]


def _hold_lock(url: str, taken: threading.Event, release: threading.Event) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("lock table kalshi.trades, kalshi.orderbook_deltas in access exclusive mode")
        taken.set()
        release.wait(60)
        conn.rollback()


async def test_next_session_starts_while_the_previous_one_is_still_flushing(
        sim: Simulator, own_pg: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    _server, url = own_pg
    data = tmp_path / "data"
    window = Window()
    taken, release = threading.Event(), threading.Event()
    holder: asyncio.Future[None] | None = None

    first_task = asyncio.create_task(framed_session(sim, url, data, duration=6, window=window))
    try:
        # The lock is taken once A records (not at a fixed time: on a slow machine A's start takes seconds) and
        # held past A's deadline, so A's last batches cannot be written when B starts.
        await wait_until(lambda: window.started or first_task.done(), 30, "A recording")
        holder = asyncio.ensure_future(asyncio.to_thread(_hold_lock, url, taken, release))
        await wait_until(lambda: window.tape_end > 0 and taken.is_set(), 30, "A at its deadline, lock held")
        truth_a = {t: sim.book(t) for t in sim.tickers}
        assert not first_task.done(), "A finished although its last batches could not be written"
        second_task = asyncio.create_task(framed_session(sim, url, data, duration=6, window=window))
        await asyncio.sleep(4.0)  # the lock is held 4 s more while B starts (schedule)
        release.set()
        (first, _), (second, _) = await asyncio.wait_for(asyncio.gather(first_task, second_task), 90)
    finally:
        release.set()
        if holder is not None:
            await holder
    report = Report()
    check_trades(url, sim, window, report=report)
    check_books(url, sim, first.session_id, report=report, truth=truth_a)
    check_books(url, sim, second.session_id, report=report)
    report.assert_clean()
    assert report.trades_expected > 30
    statuses = dict(rows(url, "select session_id::text, status from kalshi.sessions"))
    assert statuses[first.session_id] in ("completed", "degraded")
    assert statuses[second.session_id] in ("completed", "degraded")
