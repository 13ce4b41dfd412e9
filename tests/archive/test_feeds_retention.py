"""The feeds of trades and ticker updates (sql/060: session x connection x subscription x market_id) go with the
days that used them: retention and the archive delete a feed once its session was last heard of more than a day
before the dropped days and no stored row refers to it; every other feed, and every row's view, is unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from kalshi_store import archive, retention

TODAY = datetime.now(UTC).date()


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _session(conn: psycopg.Connection[Any], last_heard: datetime, *, status: str = "completed") -> str:
    session_id = str(uuid.uuid4())
    conn.execute("insert into kalshi.sessions (session_id, market_set, environment, started_at, ended_at, status, "
                 "heartbeat_at, updated_at) values (%s, 'test', 'demo', %s, %s, %s, %s, %s)",
                 (session_id, last_heard - timedelta(hours=1), None if status == "running" else last_heard, status,
                  last_heard, last_heard))
    return session_id


def _trade(conn: psycopg.Connection[Any], session_id: str, at: datetime, ticker: str, sid: int = 1) -> None:
    conn.execute("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
                 "taker_outcome_side, exchange_ts, received_at, source, session_id, generation, sid, seq) "
                 "values (%s, %s, %s, 0.4200, 0.5800, 3.00, 'yes', %s, %s, 'ws', %s, 1, %s, 7)",
                 (str(uuid.uuid4()), at.date(), ticker, at, at, session_id, sid))


def _ticker(conn: psycopg.Connection[Any], session_id: str, at: datetime, ticker: str) -> None:
    conn.execute("insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, market_id, price, yes_bid, "
                 "yes_ask, received_at, session_id, generation, sid) "
                 "values (%s, %s, kalshi.ticker_hash(0.42, 0.41, 0.43, null, null, null, null, null, null, null), "
                 "%s, 0.42, 0.41, 0.43, %s, %s, 1, 2)",
                 (ticker, at, str(uuid.uuid5(uuid.NAMESPACE_URL, ticker)), at, session_id))


def _feeds(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("select session_id::text, count(*) from kalshi.feeds group by 1").fetchall())


def _views(conn: psycopg.Connection[Any], sessions: list[str]) -> list[Any]:
    """Every trade and ticker update of ``sessions``, as the views show them."""
    return [conn.execute("select * from kalshi.trades where session_id = any(%s::uuid[]) order by trade_id",
                         (sessions,)).fetchall(),
            conn.execute("select * from kalshi.tickers where session_id = any(%s::uuid[]) "
                         "order by market_ticker, exchange_ts", (sessions,)).fetchall()]


def _partitions(conn: psycopg.Connection[Any], day: date) -> None:
    conn.execute("select kalshi.ensure_partitions(1, %s)", ((TODAY - day).days + 1,))


def test_retention_deletes_the_feeds_only_the_dropped_days_used(db_url: str) -> None:
    old_day, kept_day = TODAY - timedelta(days=6), TODAY - timedelta(days=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        _partitions(conn, old_day)
        old = _session(conn, _at(old_day, 13))
        dead = _session(conn, _at(old_day, 13), status="running")  # killed, never closed: heard of 6 days ago
        recent = _session(conn, _at(kept_day, 13))
        # A session of the old day that stamped one trade in the future (a wrong exchange clock): that feed stays.
        skewed = _session(conn, _at(old_day, 13))
        for session_id in (old, dead, skewed):
            for i in range(3):
                _trade(conn, session_id, _at(old_day), f"M-{i}")
                _ticker(conn, session_id, _at(old_day), f"M-{i}")
        _trade(conn, skewed, _at(TODAY + timedelta(days=2)), "M-0", sid=9)
        for i in range(3):
            _trade(conn, recent, _at(kept_day), f"M-{i}")
            _ticker(conn, recent, _at(kept_day), f"M-{i}")
        assert _feeds(conn) == {old: 4, dead: 4, skewed: 5, recent: 4}  # a trade feed, a ticker feed a market
        kept = _views(conn, [recent])
        future = conn.execute("select * from kalshi.trades where trade_date > %s", (TODAY,)).fetchall()

    changes = retention.apply_retention(db_url, keep_days=3)

    assert ("kalshi.feeds", "deleted feeds of dropped days", 12) in changes
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        assert _feeds(conn) == {skewed: 1, recent: 4}
        # The rows left read exactly as before: their feeds are all there.
        assert _views(conn, [recent]) == kept
        assert conn.execute("select * from kalshi.trades where trade_date > %s", (TODAY,)).fetchall() == future
    # Nothing more to delete on a second run.
    assert not [change for change in retention.apply_retention(db_url, keep_days=3) if change[0] == "kalshi.feeds"]


def test_archiving_deletes_a_feed_once_its_session_is_a_day_older_than_what_is_left(db_url: str,
                                                                                     tmp_path: Path) -> None:
    day, next_day = TODAY - timedelta(days=9), TODAY - timedelta(days=8)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set time zone 'UTC'")
        _partitions(conn, day)
        early = _session(conn, _at(day - timedelta(days=1), 23))  # heard of last the day before
        late = _session(conn, _at(day, 13))
        for i in range(2):
            _trade(conn, early, _at(day, 0), f"M-{i}")
            _ticker(conn, early, _at(day - timedelta(days=1), 23), f"M-{i}")
            _trade(conn, late, _at(day), f"M-{i}")
            _ticker(conn, late, _at(next_day), f"M-{i}")  # the ticker updates of the late one are of the next day
        assert _feeds(conn) == {early: 3, late: 3}
        before = _views(conn, [early, late])

    todo = [(table, d) for table, d in archive.days_to_archive(db_url, 7)
            if table in ("trades", "tickers") and d >= day - timedelta(days=1)]
    assert todo == [("tickers", day - timedelta(days=1)), ("trades", day - timedelta(days=1)),
                    ("tickers", day), ("trades", day), ("tickers", next_day), ("trades", next_day)]

    def archived(steps: list[tuple[str, date]]) -> list[int]:
        return [m.rows if m else 0 for m in (archive.archive_day(db_url, str(tmp_path), t, d) for t, d in steps)]

    # The day first, out of order: the early session's trade feed goes (its rows are archived, it was last heard
    # of before the day); its ticker feeds stay, the day before still holds their rows.
    assert archived(todo[2:4]) == [0, 4]
    with psycopg.connect(db_url) as conn:
        assert _feeds(conn) == {early: 2, late: 3}
    # The day before: the early session was heard of on it, so its feeds wait a day more.
    assert archived(todo[:2]) == [2, 0]
    with psycopg.connect(db_url) as conn:
        assert _feeds(conn) == {early: 2, late: 3}
    assert archived(todo[4:]) == [2, 0]
    with psycopg.connect(db_url) as conn:
        assert _feeds(conn) == {}
    # The archive holds every row as the views showed it, sessions included (read before the feeds went).
    trades = archive.read_archive(str(tmp_path), "trades", [day, next_day])
    tickers = archive.read_archive(str(tmp_path), "tickers", [day - timedelta(days=1), day, next_day])
    assert trades is not None and tickers is not None
    for table in (trades, tickers):
        assert sorted(str(uuid.UUID(bytes=s)) for s in table.column("session_id").to_pylist()) == sorted(
            [early] * 2 + [late] * 2)
    assert len(before[0]) == 4 and len(before[1]) == 4
