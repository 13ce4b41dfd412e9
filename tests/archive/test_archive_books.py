"""The books of order book deltas (sql/050) go with their day: deleted once the day's delta partitions are dropped
(archive or retention), except those a delta still refers to."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from reporting_recording import Recording

sys.path.insert(0, str(Path(__file__).parent))

from live_deltas import BOOKS, write_live_deltas

from kalshi_store import archive, retention


def _books(url: str, day: date) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from kalshi.orderbook_delta_books where session_date = %s",
                           (day,)).fetchone()
    assert row is not None
    return int(row[0])


def _deltas(url: str, day: date) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from kalshi.orderbook_deltas where session_date = %s", (day,)).fetchone()
    assert row is not None
    return int(row[0])


def test_archiving_a_day_deletes_its_books_and_only_those(recorded: Recording, tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    other = today - timedelta(days=1)
    write_live_deltas(recorded.url, other)
    # An unused book of another day (its deltas gone some other way) is not the archive's business.
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        conn.execute("insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, "
                     "market_ticker, side) values (gen_random_uuid(), %s, 1, 1, 'UNUSED', 'yes')", (other,))
    assert _books(recorded.url, today) > 0 and _books(recorded.url, other) == BOOKS + 1
    moved = archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", today)
    assert moved is not None and moved.rows > 0
    assert _books(recorded.url, today) == 0
    assert _books(recorded.url, other) == BOOKS + 1

    # A late delta of the archived day (a replay) gets its book again, and is archived with the day's file.
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        conn.execute("select kalshi.ensure_partitions(1)")
        conn.execute("insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, "
                     "market_ticker, side, price, delta, received_at) "
                     "values (%s, %s, 1, 1, 999999, %s, 'yes', 0.5, 1, now())",
                     (recorded.session_id, today, recorded.tickers[0]))
    assert _books(recorded.url, today) == 1 and _deltas(recorded.url, today) == 1
    again = archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", today)
    assert again is not None and again.rows == 1 and _books(recorded.url, today) == 0
    stored = archive.read_archive(str(tmp_path), "orderbook_deltas", [today])
    assert stored is not None and stored.num_rows == moved.rows + 1


def test_books_a_delta_still_refers_to_are_kept(db_url: str) -> None:
    """Deltas of a day without a partition (in the default partition) keep their books."""
    day = datetime.now(UTC).date() - timedelta(days=40)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, "
                     "market_ticker, side, price, delta, client_order_id, received_at) "
                     "values (gen_random_uuid(), %s, 1, 1, 1, 'OLD', 'yes', 0.5, 1, 'mine', now())", (day,))
        conn.execute("insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, "
                     "market_ticker, side) values (gen_random_uuid(), %s, 1, 1, 'UNUSED', 'yes')", (day,))
        where = conn.execute("select tableoid::regclass::text from kalshi.orderbook_delta_rows").fetchone()
        assert where == ("kalshi.orderbook_delta_rows_default",)
        assert retention.delete_unused_books(conn, day=day) == 1  # the unused one
    assert _books(db_url, day) == 1 and _deltas(db_url, day) == 1


def test_retention_deletes_the_books_of_the_days_it_drops(db_url: str) -> None:
    today = datetime.now(UTC).date()
    old, kept = today - timedelta(days=4), today - timedelta(days=1)
    write_live_deltas(db_url, old)
    write_live_deltas(db_url, kept)
    changes = retention.apply_retention(db_url, keep_days=2)
    assert ("kalshi.orderbook_delta_books", "deleted books of dropped days", BOOKS) in changes
    assert _books(db_url, old) == 0 and _deltas(db_url, old) == 0
    assert _books(db_url, kept) == BOOKS and _deltas(db_url, kept) > 0
