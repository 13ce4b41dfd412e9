"""Untrusted windows and book_at across an abandoned order book recovery (rows as the recorder writes them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kalshi_ingest import report

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
MARKET = "KXTEST-26NOV-T1"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _seed(conn: psycopg.Connection[Any], outcome: str) -> None:
    """One session: a snapshot, deltas, a gap closed with ``outcome`` at 3 s, a later snapshot at 10 s."""
    session = uuid.uuid4()
    day = T0.date()
    conn.execute("insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, ended_at, "
                 "status) values (%s, 'windows', 'test', %s, %s, %s, 'completed')",
                 (session, [MARKET], T0, _at(20)))
    snapshot = ("insert into kalshi.orderbook_snapshots (session_id, session_date, generation, sid, seq, market_ticker, "
                "yes_prices, yes_sizes, no_prices, no_sizes, received_at) values (%s, %s, 1, 1, %s, %s, %s, %s, %s, %s, %s)")
    conn.execute(snapshot, (session, day, 1, MARKET, [Decimal("0.40")], [Decimal(100)], [Decimal("0.55")],
                            [Decimal(50)], _at(0)))
    delta = ("insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, market_ticker, side, "
             "price, delta, exchange_ts, received_at) values (%s, %s, 1, 1, %s, %s, %s, %s, %s, %s, %s)")
    for seq, seconds, side, price, change in [(2, 1.0, "yes", "0.41", 10), (3, 1.5, "yes", "0.40", -100),
                                              # seq 4 was lost
                                              (5, 2.0, "no", "0.55", -20), (6, 6.0, "yes", "0.41", 5)]:
        conn.execute(delta, (session, day, seq, MARKET, side, Decimal(price), Decimal(change), _at(seconds),
                             _at(seconds)))
    conn.execute(snapshot, (session, day, 7, MARKET, [Decimal("0.41"), Decimal("0.42")], [Decimal(15), Decimal(7)],
                            [Decimal("0.55")], [Decimal(30)], _at(10)))
    conn.execute("insert into kalshi.gap_ledger (event_id, session_id, generation, incident_id, kind, sid, channel, "
                 "markets, expected_seq, received_seq, started_at, ended_at, outcome, detail) "
                 "values (%s, %s, 1, 1, 'gap', 1, 'orderbook_delta', %s, 4, 5, %s, %s, %s, %s)",
                 (uuid.uuid4(), session, [MARKET], _at(2.001), _at(3), outcome, Jsonb({})))
    conn.commit()


def _window(conn: psycopg.Connection[Any]) -> tuple[datetime, datetime]:
    row = conn.execute("select started_at, ended_at from kalshi.untrusted_windows").fetchone()
    assert row is not None
    return row[0], row[1]


def _book(conn: psycopg.Connection[Any], seconds: float) -> tuple[dict[tuple[str, Decimal], Decimal], bool]:
    rows = conn.execute("select side, price, size, trusted from kalshi.book_at(%s, %s)",
                        (MARKET, _at(seconds))).fetchall()
    return {(side, price): size for side, price, size, _ in rows}, all(r[3] for r in rows)


def test_a_repaired_gap_ends_with_its_incident(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _seed(conn, "snapshot")
        # The window starts at the exchange time of the last delta received in sequence (seq 3).
        assert _window(conn) == (_at(1.5), _at(3))
        assert _book(conn, 1.2) == ({("yes", Decimal("0.40")): 100, ("yes", Decimal("0.41")): 10,
                                     ("no", Decimal("0.55")): 50}, True)
        assert _book(conn, 2.5)[1] is False
        assert _book(conn, 6.5)[1] is True  # as the ledger says: repaired at 3 s


def test_an_abandoned_book_gap_stays_untrusted_until_the_next_snapshot(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        _seed(conn, "abandoned")
        assert _window(conn) == (_at(1.5), _at(10))
        book, trusted = _book(conn, 6.5)
        assert not trusted and book == {("yes", Decimal("0.41")): 15, ("no", Decimal("0.55")): 30}
        assert _book(conn, 10.5) == ({("yes", Decimal("0.41")): 15, ("yes", Decimal("0.42")): 7,
                                      ("no", Decimal("0.55")): 30}, True)
        assert _book(conn, 25)[1] is False  # after the session ended


def test_the_report_renders_markets_without_trades_or_tickers(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        _seed(conn, "abandoned")
    out = report.build_report(db_url, "windows", out=tmp_path / "quiet.html")
    text = out.read_text()
    assert MARKET in text and "data:image/png;base64," in text and "No trade in range." in text
    assert "sequence gap (messages lost)" in text


def test_daily_completeness_splits_a_session_at_midnight_utc(db_url: str) -> None:
    midnight = datetime(2026, 11, 20, tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        session = uuid.uuid4()
        conn.execute("insert into kalshi.sessions (session_id, market_set, environment, markets, started_at, "
                     "ended_at, status) values (%s, 'night', 'test', %s, %s, %s, 'completed')",
                     (session, ["A", "B"], midnight - timedelta(seconds=30), midnight + timedelta(seconds=90)))
        conn.execute("insert into kalshi.gap_ledger (event_id, session_id, generation, incident_id, kind, markets, "
                     "started_at, ended_at, outcome) values (%s, %s, 1, 1, 'disconnect', '{}', %s, %s, 'reconnected')",
                     (uuid.uuid4(), session, midnight - timedelta(seconds=10), midnight + timedelta(seconds=20)))
        conn.commit()
        rows = conn.execute("select day, market_ticker, recorded_seconds, untrusted_seconds, trusted_seconds "
                            "from kalshi.data_completeness_daily order by day, market_ticker").fetchall()
    first, second = midnight.date() - timedelta(days=1), midnight.date()
    assert rows == [(first, "A", 30.0, 10.0, 20.0), (first, "B", 30.0, 10.0, 20.0),
                    (second, "A", 90.0, 20.0, 70.0), (second, "B", 90.0, 20.0, 70.0)]
