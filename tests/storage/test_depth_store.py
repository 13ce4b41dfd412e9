"""DepthStore against a real PostgreSQL: a session's stored books come back typed and in wire order, only the gaps
and disconnects of its ledger count, and its authoritative window runs from handover to handover."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg

from kalshi_store.depth import DepthStore, LedgerGap, StoredDelta, StoredSnapshot, Window

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def add_snapshot(conn: psycopg.Connection[Any], session_id: str, generation: int, seq: int, at: datetime) -> None:
    conn.execute("insert into kalshi.orderbook_snapshots (session_id, session_date, generation, sid, seq, "
                 "market_ticker, yes_prices, yes_sizes, no_prices, no_sizes, use_yes_price, received_at) "
                 "values (%s, %s, %s, 1, %s, 'A', %s, %s, %s, %s, true, %s)",
                 (session_id, at.date(), generation, seq, [D("0.40")], [D(10)], [D("0.55")], [D(5)], at))


def add_delta(conn: psycopg.Connection[Any], session_id: str, generation: int, seq: int, at: datetime) -> None:
    conn.execute("insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, market_ticker, "
                 "side, price, delta, received_at) values (%s, %s, %s, 1, %s, 'A', 'yes', 0.41, -2, %s)",
                 (session_id, at.date(), generation, seq, at))


def add_session(conn: psycopg.Connection[Any], session_id: str, start: datetime, *,
                superseded_by: str | None = None, superseded_at: datetime | None = None) -> None:
    conn.execute("insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, status, "
                 "superseded_by, superseded_at) values (%s, 's', 'test', '{A}', %s, 'running', %s, %s)",
                 (session_id, start, superseded_by, superseded_at))


def test_book_events_are_the_sessions_books_in_wire_order(db_url: str) -> None:
    session, other = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(db_url) as conn:
        add_snapshot(conn, session, 2, 1, T0 + timedelta(seconds=5))  # stored out of order, across both tables
        add_delta(conn, session, 1, 3, T0 + timedelta(seconds=2))
        add_snapshot(conn, session, 1, 1, T0)
        add_delta(conn, session, 1, 2, T0 + timedelta(seconds=1))
        add_delta(conn, other, 1, 2, T0)
    with DepthStore.connect(db_url) as store:
        events = list(store.book_events(session))
    assert [(type(e), e.generation, e.seq) for e in events] == [
        (StoredSnapshot, 1, 1), (StoredDelta, 1, 2), (StoredDelta, 1, 3), (StoredSnapshot, 2, 1)]
    assert events[0] == StoredSnapshot(1, 1, 1, "A", T0, True, [D("0.40")], [D(10)], [D("0.55")], [D(5)])
    assert events[1] == StoredDelta(1, 1, 2, "A", T0 + timedelta(seconds=1), "yes", D("0.41"), D(-2))


def test_gaps_are_the_ledgers_gaps_and_disconnects(db_url: str) -> None:
    session = str(uuid.uuid4())
    with psycopg.connect(db_url) as conn:
        for kind, markets, outcome in (("gap", ["A"], "abandoned"), ("disconnect", [], "recovered"),
                                       ("recovery", ["A"], "recovered")):
            conn.execute("insert into kalshi.gap_ledger (event_id, session_id, kind, markets, started_at, ended_at, "
                         "outcome) values (%s, %s, %s, %s, %s, %s, %s)",
                         (str(uuid.uuid4()), session, kind, markets, T0, T0 + timedelta(seconds=1), outcome))
    with DepthStore.connect(db_url) as store:
        gaps = sorted(store.gaps(session), key=lambda g: len(g.markets))
    assert gaps == [LedgerGap(frozenset(), T0, T0 + timedelta(seconds=1), "recovered"),
                    LedgerGap(frozenset({"A"}), T0, T0 + timedelta(seconds=1), "abandoned")]


def test_the_authoritative_window_runs_from_handover_to_handover(db_url: str) -> None:
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    took_over, handed_over = T0 + timedelta(seconds=10), T0 + timedelta(seconds=70)
    with psycopg.connect(db_url) as conn:
        add_session(conn, first, T0, superseded_by=second, superseded_at=took_over)
        add_session(conn, second, T0 + timedelta(seconds=8), superseded_by=third, superseded_at=handed_over)
        add_session(conn, third, T0 + timedelta(seconds=68))
    with DepthStore.connect(db_url) as store:
        assert store.authoritative_window(first) == Window(None, took_over)
        assert store.authoritative_window(second) == Window(took_over, handed_over)
        assert store.authoritative_window(third) == Window(handed_over, None)
        assert store.authoritative_window(str(uuid.uuid4())) == Window(None, None)
