"""Wire faults (simulator fault injection) against the real recording path: nothing lost, nothing duplicated,
every book equal to the exchange's at the end, every damaged window in the gap ledger, every undecodable
frame in dead_letter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kalshi_ws.simulator import Simulator

from .conftest import SEEDS
from .harness import check_all, framed_session, random_plan, rows, scalar, wait_until

pytestmark = pytest.mark.timeout(120)

DURATION = 7.5

#: Trade-stream gaps and re-created trade subscriptions are repaired by REST backfill from the last trade
#: received (fault-matrix bug 1, fixed in 3071f3a); the trade_sequence family checks it.

FAMILIES = {
    # socket closed mid-stream, repeatedly (abort and 1011), and mid-snapshot
    "close": ["close", "close_mid_snapshot"],
    # seq gaps, duplicated and reordered frames, decimals as JSON numbers, on the order book stream
    "sequence": ["drop", "duplicate", "reorder", "numbers"],
    # the same on the trade stream (no snapshot there: lost trades must come back over REST)
    "trade_sequence": ["drop", "duplicate", "reorder", "sub_error"],
    # asynchronous subscription errors 10 and 25
    "sub_error": ["sub_error"],
    # malformed JSON, unknown types, legacy-shaped and oversized (2 MiB) frames, undocumented keys, poison values
    # (a NUL in a text field: the row goes to dead_letter, nothing else is lost)
    "garbage": ["malformed", "unknown_type", "legacy", "oversized", "extra_key", "poison"],
    # server stalls with pings still flowing
    "stall": ["stall"],
}


@pytest.mark.parametrize(("family", "seed"), [(f, SEEDS[i % len(SEEDS)]) for i, f in enumerate(sorted(FAMILIES))]
                         + [("trade_sequence", SEEDS[0])])
async def test_wire_fault_family(family: str, seed: int, sim: Simulator, db_url: str, tmp_path: Path) -> None:
    channel = {"sequence": "orderbook_delta", "trade_sequence": "trade"}.get(family)
    plan = random_plan(seed, FAMILIES[family], rate=1.2, channel=channel)
    # faults stop 0.5 s before the quiet tail: a frame dropped at the very end is not detectable by a gap
    # (no later frame); that case has its own test below
    summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=DURATION, plan=plan,
                                           plan_margin=0.5)
    assert window.faults, "the schedule injected nothing"
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 20
    assert report.trades_lost == 0 and report.trades_duplicated == 0
    assert report.books_wrong == 0
    assert summary.status in ("completed", "degraded"), summary.status_message
    if family == "garbage":
        # neighbours of the bad frames were stored: every trade is there (above) and the stream never broke
        assert scalar(db_url, "select count(*) from kalshi.dead_letter where session_id = %s",
                      summary.session_id) >= 1
    if family == "close":
        assert summary.reconnects >= 1
        assert rows(db_url, "select 1 from kalshi.gap_ledger where session_id = %s and kind = 'disconnect'",
                    summary.session_id)


async def test_last_trade_frame_dropped_before_the_deadline(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    """The exchange drops the last trade frame before the session ends: no later frame reveals the gap, so the
    session cannot know (no gap row). The next session's start-of-session REST backfill stores it."""
    data = tmp_path / "data"

    async def plan(s: Simulator) -> None:
        await asyncio.sleep(1.5)
        s.inject("drop", channel="trade")
        await wait_until(lambda: any(f["kind"] == "drop" for f in s.faults_injected), 10, "the drop fired")
        await s.pause_market_activity()  # nothing after the dropped trade until the session ends

    first, window = await framed_session(sim, db_url, data, duration=6, plan=plan)
    dropped = next(f for f in window.faults if f["kind"] == "drop")
    alone = check_all(db_url, sim, window)
    missed_by_first = alone.trades_lost
    second, window = await framed_session(sim, db_url, data, duration=4, window=window)
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert second.rest_backfilled > 0
    # the first session alone missed exactly the dropped trade (or its tail): the finding in the docs
    assert missed_by_first <= 1, (missed_by_first, dropped)


async def test_trade_gap_inside_a_burst_after_a_stall(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    """A reordered trade frame held in the server's queue during a 3 s stall (pings flowing): when the stall ends
    the backlog arrives in one burst; the gap must be backfilled from before the missing trade."""

    async def plan(s: Simulator) -> None:
        await asyncio.sleep(0.5)
        s.inject("stall", duration=3.0)
        await asyncio.sleep(0.4)
        s.inject("reorder", channel="trade")

    summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=8, plan=plan)
    report = check_all(db_url, sim, window)
    report.assert_clean()  # bug 14, fixed in dc02383: backfill from the trade just before the missing seq
