"""The demo's closing summary reads the latest session of the set from a real PostgreSQL: its rows per table, its
books at the end (nearest distance), the alerts it opened and the earlier ones that still hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import psycopg
from prefect.states import Completed
from rich.console import Console

from kalshi_ingest.demo import _closing_summary
from kalshi_ingest.summaries import replay_depth
from kalshi_store.alerts_store import AlertStore, Condition, NewEpisode
from kalshi_store.depth import BookEvent, DepthStore, StoredDelta, StoredSnapshot
from kalshi_store.session_digest import latest_session_digest

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def add_session(url: str, start: datetime, *, reconnects: int = 0) -> str:
    session_id = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute("insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, "
                     "ended_at, status, reconnects) values (%s, 's', 'test', %s, %s, %s, 'completed', %s)",
                     (session_id, ["A", "B"], start, start + timedelta(seconds=60), reconnects))
    return session_id


def episode(rule: str, message: str) -> NewEpisode:
    return NewEpisode(str(uuid.uuid4()), Condition(rule, "spread_above", "A", D("0.08"), D("0.05"), message))


def snapshot(seq: int, market: str) -> StoredSnapshot:
    return StoredSnapshot(1, 1, seq, market, T0, use_yes_price=False, yes_prices=[D("0.40"), D("0.41")],
                          yes_sizes=[D(10), D(20)], no_prices=[D("0.55"), D("0.57")], no_sizes=[D(5), D(7)])


def record_session(url: str) -> tuple[str, str]:
    """An earlier session that opened an alert, and the latest one: a trade, two buckets of books, one new alert
    and the earlier alert still holding."""
    earlier = add_session(url, T0 - timedelta(hours=1))
    latest = add_session(url, T0, reconnects=2)
    with psycopg.connect(url) as conn:
        conn.execute("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
                     "exchange_ts, received_at, source, session_id) values (%s, %s, 'A', 0.42, 0.58, 1, %s, %s, "
                     "'ws', %s)", (str(uuid.uuid4()), T0.date(), T0, T0, latest))
    events: list[BookEvent] = [
        snapshot(1, "A"), snapshot(2, "B"),
        StoredDelta(1, 1, 3, "A", T0 + timedelta(seconds=12), "yes", D("0.42"), D(4)),
    ]
    summary = replay_depth(events, bucket_seconds=10, distances=[D("0.05"), D("0.01")])
    with DepthStore.connect(url) as depth:
        assert depth.write_summaries(latest, "s", summary) == len(summary) == 6  # (A: 2 buckets, B: 1) x 2
    held = episode("held", "A: spread 0.08 is above 0.05")
    with AlertStore.connect(url) as alerts:
        alerts.update_episodes("s", earlier, holding=[], resolved=[], opened=[held])
        alerts.update_episodes("s", latest, holding=[held.alert_id], resolved=[],
                               opened=[episode("new", "A: price moved +0.07")])
    return earlier, latest


def test_the_digest_is_the_latest_session_of_the_set(db_url: str) -> None:
    assert latest_session_digest(db_url, "s") is None
    _, latest = record_session(db_url)
    digest = latest_session_digest(db_url, "s")
    assert digest is not None and digest.session.session_id == latest
    assert (digest.session.markets, digest.session.reconnects, digest.session.status) == (2, 2, "completed")
    counts = digest.rows_per_table
    assert (counts["trades"], counts["sessions"], counts["alerts"], counts["depth_summaries"]) == (1, 1, 1, 6)
    assert counts["orderbook_deltas"] == 0  # every table with a session_id is counted, empty ones too
    at_end = digest.depth_at_end()
    assert [(b.market_ticker, b.distance, b.bucket_start) for b in at_end] == [
        ("A", D("0.01"), T0 + timedelta(seconds=10)), ("B", D("0.01"), T0)]
    assert at_end[0].best_bid == D("0.42")
    assert [(a.kind, a.message, a.notified) for a in digest.alerts] == [
        ("spread_above", "A: price moved +0.07", False)]
    assert digest.alerts_still_holding == 1


def test_the_closing_summary_prints_the_digest(db_url: str, tmp_path: Path) -> None:
    _, latest = record_session(db_url)
    console = Console(record=True, width=200)
    _closing_summary(console, db_url, "s", Completed(message="All states completed."), 75.0, tmp_path)
    out = console.export_text()
    assert f"session {latest}: status completed, 2 markets, 60 s recorded; reconnects 2, gaps 0" in out
    assert "demo took 75 s" in out
    assert " trades " in out and " depth_summaries " in out and "orderbook_deltas" not in out
    assert "new alerts: 1 (1 alerts of earlier sessions still hold and were not sent again)" in out
    assert "A: price moved +0.07 (no notification block configured)" in out
    assert "0.42" in out.split("depth at the end of the session")[1]


def test_the_closing_summary_says_when_no_session_was_recorded(db_url: str, tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    _closing_summary(console, db_url, "s", Completed(message="nothing"), 1.0, tmp_path)
    assert "no session was recorded" in console.export_text()
