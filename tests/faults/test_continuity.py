"""A continuous record (issue 10), without Prefect: handover between sessions, duplicates refused, markets followed
live, and every uncovered second counted as untrusted. Ground truth is the simulator: its trade tape and its
book at any instant (``book_at``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_ingest.config import MarketSet
from kalshi_ingest.report import collect, render_html
from kalshi_ingest.session import DuplicateSession, SessionSummary, Slot, run_recording_session
from kalshi_ingest.summaries import compute_depth_summaries
from kalshi_ws.simulator import Simulator

from .harness import rows, scalar, settings_for, wait_until, wait_until_db

pytestmark = pytest.mark.timeout(300)

CHANNELS = ["orderbook_delta", "ticker", "trade"]


def followed_set(sim: Simulator, **extra: Any) -> MarketSet:
    return MarketSet(name="cont", series=list(sim.series), channels=CHANNELS, session_seconds=60,
                     discovery_seconds=extra.pop("discovery_seconds", 30), **extra)


def _dec(x: Any) -> Decimal:
    return Decimal(str(x)).normalize()


def stored_book_at(conn: psycopg.Connection[Any], market: str, at: datetime
                   ) -> tuple[dict[str, dict[Decimal, Decimal]], bool] | None:
    found = conn.execute("select side, price, size, trusted from kalshi.book_at(%s, %s)", (market, at)).fetchall()
    if not found:
        return None
    book: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}
    for side, price, size, _ in found:
        book[side][_dec(price)] = _dec(size)
    return book, all(t for *_, t in found)


def true_book_at(sim: Simulator, market: str, ts_ms: int) -> dict[str, dict[Decimal, Decimal]]:
    book = sim.book_at(market, ts_ms)
    return {"yes": {_dec(p): _dec(s) for p, s in book["yes_dollars"]},
            "no": {_dec(p): _dec(s) for p, s in book["no_dollars"]}}


async def covered(url: str, session_id: str, markets: list[str]) -> None:
    """Wait until the session's coverage of every market is on record (its books are stored)."""
    await wait_until_db(url, "select count(distinct market_ticker) from kalshi.coverage where session_id = %s "
                             "and market_ticker = any(%s)", (session_id, markets), lambda n: n == len(markets), 20,
                        "every book of the session stored")


def session_ids(url: str) -> list[str]:
    return [str(r[0]) for r in rows(url, "select session_id from kalshi.sessions order by started_at")]


@pytest.mark.timeout(300)  # ~730 kalshi.book_at queries of ~0.1 s each: 80-130 s alone, more beside other tests
async def test_handover_leaves_no_instant_unrecorded_and_books_match_the_exchange(
        sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = followed_set(sim)
    markets = list(sim.tickers)
    a = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=8, progress_interval=3600))
    await wait_until(lambda: len(session_ids(db_url)) == 1, 20, "session A open")
    first_id = session_ids(db_url)[0]
    await covered(db_url, first_id, markets)
    await asyncio.sleep(1.5)
    # B owns the set for longer (20 s from now): it takes over once its books are stored; A then stops.
    b = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=20, progress_interval=3600))
    first: SessionSummary = await asyncio.wait_for(a, 30)
    assert first.handed_over_to is not None, first.status_message
    assert first.status == "completed" and "handed over" in first.status_message
    await asyncio.sleep(2)
    sim_end_ms = sim.model.now_ms()
    second: SessionSummary = await asyncio.wait_for(b, 40)
    assert second.took_over_from == [first.session_id] and second.session_id == first.handed_over_to

    superseded_at, a_end = rows(db_url, "select superseded_at, ended_at from kalshi.sessions where session_id = %s",
                                first.session_id)[0]
    b_start = scalar(db_url, "select min(recording_from) from kalshi.coverage where session_id = %s",
                     second.session_id)
    # The overlap: B recorded from before A was told to stop, and A stopped within about a heartbeat of it.
    assert b_start <= superseded_at <= a_end
    assert (a_end - superseded_at).total_seconds() < 3
    # No instant of the set's markets went unrecorded across the handover. (A market the simulator opened, or paused
    # and reopened, meanwhile has its few milliseconds from opening to snapshot on record, as it should.)
    holes = rows(db_url, "select market_ticker, started_at, ended_at from kalshi.uncovered_windows "
                         "where market_set = 'cont' and reason = 'between_sessions'")
    if holes:
        print("HOLES", holes, "A", first.session_id, "B", second.session_id, "superseded", superseded_at, "A end", a_end)
        for r in rows(db_url, "select * from kalshi.coverage_windows where market_ticker = any(%s) "
                              "order by market_ticker, recording_from", [h[0] for h in holes]):
            print("WINDOW", r)
        for r in rows(db_url, "select * from kalshi.coverage where market_ticker = any(%s) "
                              "order by market_ticker, recording_from", [h[0] for h in holes]):
            print("COVERAGE", r)
    assert holes == []
    assert scalar(db_url, "select coalesce(max(seconds), 0) from kalshi.uncovered_windows") < 1
    assert scalar(db_url, "select count(*) from kalshi.untrusted_windows where market_ticker = any(%s) "
                          "and kind <> 'uncovered'", markets) == 0
    # Trades are stored once each (WS from both sessions and REST backfill overlap).
    lo = int(scalar(db_url, "select extract(epoch from started_at) * 1000 from kalshi.sessions where session_id = %s",
                    first.session_id))
    hi = int(second.ended_at.timestamp() * 1000) - 1000
    tape = {t["trade_id"] for t in sim.trade_tape() if t["ticker"] in markets and lo <= t["ts_ms"] <= hi}
    stored = {r[0] for r in rows(db_url, "select trade_id from kalshi.trades where market_ticker = any(%s)", markets)}
    missing = [(t["ticker"], t["ts_ms"]) for t in sim.trade_tape() if t["trade_id"] in tape - stored]
    assert tape and not missing, missing[:5]
    # Depth summaries speak for each instant once: A until the handover, B from it.
    bucket = 2.0
    a_depth = compute_depth_summaries(db_url, first.session_id, "cont", bucket_seconds=bucket,
                                      distances=[Decimal("0.02")])
    b_depth = compute_depth_summaries(db_url, second.session_id, "cont", bucket_seconds=bucket,
                                      distances=[Decimal("0.02")])
    assert len(a_depth) and len(b_depth)
    assert (a_depth.bucket_start < superseded_at).all()
    assert (b_depth.bucket_start + timedelta(seconds=bucket) > superseded_at).all()
    # book_at across the handover equals the exchange's book at 100+ instants.
    start_ms = int(scalar(db_url, "select extract(epoch from min(recording_from)) * 1000 from kalshi.coverage "
                                  "where session_id = %s", first.session_id)) + 50
    end_ms = min(sim_end_ms, int(superseded_at.timestamp() * 1000) + 3000)
    rng = random.Random(3)
    instants = sorted({rng.randint(start_ms, end_ms) for _ in range(30)}
                      | {int(superseded_at.timestamp() * 1000) + d for d in range(-1500, 1500, 75)})
    compared = untrusted = 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        for ts_ms in instants:
            at = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
            for market in markets:
                got = stored_book_at(conn, market, at)
                assert got is not None, (market, at)
                book, trusted = got
                if not trusted:  # only where nobody recorded the market (paused and removed, or opening)
                    assert not conn.execute("select kalshi.is_covered_at(%s, %s) and kalshi.is_trusted_at(%s, %s)",
                                            (market, at, market, at)).fetchone()[0]  # type: ignore[index]
                    untrusted += 1
                    continue
                assert book == true_book_at(sim, market, ts_ms), (market, at)
                compared += 1
    assert compared >= 100 and untrusted <= compared // 4


async def test_a_session_that_would_only_duplicate_a_live_one_does_not_start(
        sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = followed_set(sim)
    a = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=12, progress_interval=3600))
    await wait_until(lambda: len(session_ids(db_url)) == 1, 20, "session A open")
    await covered(db_url, session_ids(db_url)[0], list(sim.tickers))
    with pytest.raises(DuplicateSession, match="already being recorded by session"):
        await run_recording_session(settings, market_set, db_url, duration=8, progress_interval=3600)
    assert len(session_ids(db_url)) == 1  # no row, no data for the duplicate
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a


async def test_the_pause_between_two_adhoc_sessions_is_untrusted(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = MarketSet(name="cont", tickers=list(sim.tickers), channels=CHANNELS, session_seconds=60)
    first = await run_recording_session(settings, market_set, db_url, duration=3, progress_interval=3600)
    await asyncio.sleep(6)  # nobody records
    second = await run_recording_session(settings, market_set, db_url, duration=3, progress_interval=3600)
    holes = rows(db_url, "select market_ticker, started_at, ended_at, session_id::text from kalshi.uncovered_windows "
                         "where market_set = 'cont' order by market_ticker")
    assert sorted(h[0] for h in holes) == sorted(sim.tickers)
    for _, start, end, resumed_by in holes:
        assert resumed_by == second.session_id
        assert 5.5 < (end - start).total_seconds() < 9
    market = sim.tickers[0]
    start, end = holes[0][1], holes[0][2]
    middle = start + (end - start) / 2
    assert scalar(db_url, "select kalshi.is_trusted(%s, %s, %s)", market, start, end) is False
    assert scalar(db_url, "select kalshi.is_trusted_at(%s, %s)", market, middle) is False
    assert all(not r[0] for r in rows(db_url, "select trusted from kalshi.book_at(%s, %s)", market, middle))
    fraction = scalar(db_url, "select min(trusted_fraction) from kalshi.data_completeness_daily "
                              "where market_set = 'cont'")
    assert fraction < 0.75  # ~6 s of ~13 s were not recorded: no figure says 100 %
    assert scalar(db_url, "select uncovered_before_seconds from kalshi.session_health where session_id = %s",
                  second.session_id) > 5.5
    assert scalar(db_url, "select uncovered_before_seconds from kalshi.session_health where session_id = %s",
                  first.session_id) == 0
    # The report over both sessions: the pause is a red band, and "data trusted" is not 100 %.
    data = collect(db_url, "cont")
    assert "uncovered" in set(data.windows.kind)
    summary = data.market_summary()
    assert ((summary.recorded - summary.untrusted) / summary.recorded < 0.75).all()
    page = render_html(data, max_charts=1)
    assert "100.00%" not in page


async def test_a_market_that_opens_mid_session_is_recorded_from_its_first_snapshot(
        sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = followed_set(sim)
    task = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=10,
                                                     progress_interval=3600))
    await wait_until(lambda: len(session_ids(db_url)) == 1, 20, "session open")
    session_id = session_ids(db_url)[0]
    await covered(db_url, session_id, list(sim.tickers))
    opened_ms = sim.model.now_ms()
    new = sim.open_market(sim.series[1])
    await wait_until_db(db_url, "select count(*) from kalshi.orderbook_snapshots where market_ticker = %s", (new,),
                        lambda n: n > 0, 30, "first snapshot of the new market stored")
    lag = scalar(db_url, "select extract(epoch from min(received_at)) * 1000 from kalshi.orderbook_snapshots "
                         "where market_ticker = %s", new) - opened_ms
    # The target (2 s) is measured by bench/markets_scale.py; here a bound no loaded machine misses.
    logging.getLogger(__name__).warning("first snapshot of %s stored %.0f ms after it opened", new, lag)
    assert lag < 10_000, f"first snapshot of {new} stored {lag:.0f} ms after it opened"
    gone = sim.tickers[0]
    sim.close_market(gone)
    # The closed market leaves the live subscriptions (delete_markets): the exchange no longer sends it.
    await wait_until(lambda: all(gone not in (sub.tickers or []) for c in sim.connections.values() if not c.closed
                                 for sub in c.subs.values()), 20, "closed market unsubscribed")
    summary = await asyncio.wait_for(task, 30)
    assert new in summary.markets_added and gone in summary.markets_removed
    # Trades and books of the new market were recorded like the others.
    await asyncio.sleep(0)
    assert scalar(db_url, "select count(*) from kalshi.orderbook_deltas where market_ticker = %s", new) > 0
    # Its book equals the exchange's in the middle of its (longest) stretch of coverage (the simulator may pause it).
    start, end = rows(db_url, "select recording_from, recording_to from kalshi.coverage_windows where session_id = %s "
                              "and market_ticker = %s order by recording_to - recording_from desc limit 1",
                      session_id, new)[0]
    middle_ms = int((start.timestamp() + (end - start).total_seconds() / 2) * 1000)
    with psycopg.connect(db_url) as conn:
        got = stored_book_at(conn, new, datetime.fromtimestamp(middle_ms / 1000, tz=UTC))
    assert got is not None and got[1] and got[0] == true_book_at(sim, new, middle_ms)
    # The coverage record: the new market from its snapshot (its opening on record), the closed one until it closed.
    opened_at, recording_from = rows(db_url, "select opened_at, recording_from from kalshi.coverage "
                                             "where session_id = %s and market_ticker = %s", session_id, new)[0]
    assert opened_at <= recording_from and (recording_from - opened_at).total_seconds() < 10
    assert rows(db_url, "select end_reason from kalshi.coverage where session_id = %s and market_ticker = %s",
                session_id, gone) == [("inactive",)]
    assert scalar(db_url, "select count(*) from kalshi.uncovered_windows where market_ticker = %s "
                          "and reason = 'before_subscribed'", new) >= 1  # (again if the simulator paused it)
    assert set(scalar(db_url, "select markets from kalshi.sessions where session_id = %s", session_id)) >= {new, gone}


async def test_a_set_with_no_open_market_waits_for_one(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = MarketSet(name="empty", series=["KXSIMNEW"], channels=CHANNELS, session_seconds=60,
                           discovery_seconds=30)
    task = asyncio.create_task(run_recording_session(settings, market_set, db_url, duration=8,
                                                     progress_interval=3600))
    await wait_until(lambda: len(session_ids(db_url)) == 1, 20, "session open")
    await wait_until(lambda: any("market_lifecycle_v2" in c.by_channel for c in sim.connections.values()), 10,
                     "lifecycle subscribed")
    await asyncio.sleep(0.5)
    new = sim.open_market("KXSIMNEW")
    summary = await asyncio.wait_for(task, 30)
    assert summary.status == "completed", summary.status_message
    assert summary.markets_added == [new]
    assert scalar(db_url, "select count(*) from kalshi.orderbook_snapshots where market_ticker = %s", new) >= 1
    assert scalar(db_url, "select count(*) from kalshi.market_lifecycle where market_ticker = %s", new) >= 2


async def test_a_killed_session_is_closed_by_the_next_and_its_silence_is_uncovered(
        sim: Simulator, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path / "data")
    market_set = MarketSet(name="cont", tickers=list(sim.tickers), channels=CHANNELS, session_seconds=60)
    with psycopg.connect(db_url) as conn:  # what a SIGKILLed session leaves: running, heartbeat a minute old
        dead = conn.execute(
            "insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, planned_start, "
            "planned_end, updated_at, heartbeat_at, slot_end) values (gen_random_uuid(), 'cont', 'test', %s, "
            "now() - interval '3 minutes', now() - interval '3 minutes', now() + interval '1 hour', "
            "now() - interval '1 minute', now() - interval '1 minute', now() + interval '1 hour') "
            "returning session_id::text", (list(sim.tickers),)).fetchone()[0]
    summary = await run_recording_session(settings, market_set, db_url, duration=2, progress_interval=3600)
    assert summary.took_over_from == []
    status, message, ended = rows(db_url, "select status, status_message, ended_at from kalshi.sessions "
                                          "where session_id = %s", dead)[0]
    assert status == "failed" and message.startswith("abandoned")
    assert abs((ended - (datetime.now(UTC) - timedelta(minutes=1))).total_seconds()) < 30
    holes = rows(db_url, "select session_id::text, seconds from kalshi.uncovered_windows where market_set = 'cont'")
    assert len(holes) == len(sim.tickers) and all(h[0] == summary.session_id and h[1] > 50 for h in holes)


def test_a_scheduled_slot_ends_at_the_next_start_plus_the_handover() -> None:
    start = datetime(2026, 12, 4, 10, tzinfo=UTC)
    slot = Slot.scheduled(start, start + timedelta(hours=1), successor_expected=True, handover_seconds=120)
    assert slot.deadline == start + timedelta(hours=1, minutes=2) and slot.begins == start
    last = Slot.scheduled(start, start + timedelta(minutes=5), successor_expected=False, handover_seconds=120)
    assert last.deadline == last.end


async def test_a_superseded_session_records_on_until_its_successor_records_each_of_its_markets(db_url: str) -> None:
    """The successor took over with its own books stored; the predecessor also records a market that opened during
    the handover, which the successor picks up a moment later. The predecessor stops only once the successor's
    coverage names that market too (no instant of it unrecorded), and at the latest after the bound."""
    from kalshi_ingest.session import _Handover, _keep_alive
    from kalshi_store.continuity import CoverageChange, SessionLink

    now = datetime.now(UTC)
    a = SessionLink(db_url, str(uuid.uuid4()), "handover-rule")
    b = SessionLink(db_url, str(uuid.uuid4()), "handover-rule")
    claim = dict(environment="simulator", markets=["X"], channels=CHANNELS, use_yes_price=False, planned_start=None,
                 planned_end=now + timedelta(seconds=60), slot_start=None, slot_end=now + timedelta(seconds=60),
                 flow_run_id=None)
    await a.claim(**claim)  # type: ignore[arg-type]
    for market in ("X", "NEW"):  # NEW opened during the handover: A subscribed it, B has not yet
        a.note(CoverageChange(market, now))
    await a.beat()
    b_claim = await b.claim(**claim)  # type: ignore[arg-type]
    assert [p.session_id for p in b_claim.predecessors] == [a.session_id]
    b.note(CoverageChange("X", now))
    await b.beat()
    assert await b.hand_over(b_claim.predecessors) is not None

    class Client:
        stopped_at: float | None = None

        def stop(self) -> None:
            self.stopped_at = self.stopped_at or time.monotonic()

    class Follower:
        recording = ["X", "NEW"]

    client = Client()
    keep_alive = asyncio.create_task(_keep_alive(a, client, Follower(), _Handover(slot=Slot.adhoc(60))))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(2.5)  # A has seen the handover (it beats every second) and records on
        assert client.stopped_at is None
        b.note(CoverageChange("NEW", datetime.now(UTC)))
        await b.beat()
        covered_at = time.monotonic()
        await wait_until(lambda: client.stopped_at is not None, 5, "A to stop once B records NEW")
        assert client.stopped_at is not None and client.stopped_at - covered_at < 2
    finally:
        keep_alive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keep_alive
        await a.close()
        await b.close()
