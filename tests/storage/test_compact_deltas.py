"""050: order book deltas move from the 040 table to the compact layout exactly, and stay idempotent."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshi_store.batch import Batch
from kalshi_store.migrations import migrate
from kalshi_store.writer import CopyWriter

COLUMNS = ("session_id, session_date, generation, sid, seq, market_ticker, market_id, side, price, delta, "
           "client_order_id, subaccount, exchange_ts, received_at")
ORDER = "session_id, generation, sid, seq, market_ticker"
RECEIVED = datetime(2026, 11, 25, 9, 46, 40, 123456, tzinfo=UTC)
SESSION_A, SESSION_B = str(uuid.uuid4()), str(uuid.uuid4())

#: Deltas in the 040 layout, with what the compact layout must keep exactly: prices and sizes of several scales,
#: no exchange time, one that is not a whole millisecond, one months away from the receive time (both kept in the
#: extras), our own order's columns, no market_id, the same market and seq in two sessions.
OLD_ROWS: list[tuple[Any, ...]] = [
    (SESSION_A, date(2026, 11, 25), 1, 2, 10, "M-1", "0b8f9c3e-1111-4a4a-9c9c-123456789abc", "yes",
     Decimal("0.9990"), Decimal("-75.25"), None, None, RECEIVED.replace(microsecond=120000), RECEIVED),
    (SESSION_A, date(2026, 11, 25), 1, 2, 11, "M-1", "0b8f9c3e-1111-4a4a-9c9c-123456789abc", "no",
     Decimal("0.01"), Decimal("12"), None, None, None, RECEIVED + timedelta(microseconds=1)),
    (SESSION_A, date(2026, 11, 25), 1, 2, 12, "M-2", None, "no",
     Decimal("0.123456789"), Decimal("1.000000"), "my-order", 3, RECEIVED - timedelta(microseconds=1500), RECEIVED),
    (SESSION_A, date(2026, 11, 25), 2, 5, 12, "M-2", None, "yes",
     Decimal("0.5000"), Decimal("-0.01"), None, 0, RECEIVED - timedelta(days=90), RECEIVED),
    (SESSION_B, date(2026, 11, 26), 1, 1, 10, "M-1", "0b8f9c3e-1111-4a4a-9c9c-123456789abc", "yes",
     Decimal("0.9990"), Decimal("-75.25"), None, None, RECEIVED.replace(microsecond=0) + timedelta(days=1),
     RECEIVED + timedelta(days=1)),
]


def select(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()  # type: ignore[arg-type]


def old_layout(url: str, tmp_path: Path) -> None:
    migrate(url, before=50)  # every migration released before 050


def test_050_moves_every_delta_exactly(empty_db_url: str, tmp_path: Path) -> None:
    old_layout(empty_db_url, tmp_path)
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("set time zone 'UTC'")
        for row in OLD_ROWS:
            conn.execute(f"insert into kalshi.orderbook_deltas ({COLUMNS}) values "  # noqa: S608 - constants
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
        conn.commit()
        before = select(conn, f"select {COLUMNS} from kalshi.orderbook_deltas order by {ORDER}")  # noqa: S608
    assert migrate(empty_db_url, before=60) == ["050_compact_deltas.sql"]
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("set time zone 'UTC'")
        after = select(conn, f"select {COLUMNS} from kalshi.orderbook_deltas order by {ORDER}")  # noqa: S608
        extras = select(conn, "select seq, exchange_ts is not null, client_order_id, subaccount "
                              "from kalshi.orderbook_delta_extras order by seq, subaccount")
        stored = select(conn, "select count(*) from kalshi.orderbook_delta_rows")
    assert len(before) == len(OLD_ROWS)
    assert after == before
    # Decimal for Decimal, scale included (0.9990 stays 0.9990, not 0.999).
    assert [(str(a[8]), str(a[9])) for a in after] == [(str(b[8]), str(b[9])) for b in before]
    # Only the rows that need them have extras: own order (seq 12 twice), exchange time not expressible.
    assert extras == [(12, True, None, 0), (12, True, "my-order", 3)]
    assert stored == [(len(OLD_ROWS),)]


def delta_row(seq: int, *, ts_ms: int | None, received_ns: int, client_order_id: str | None = None,
              market_id: str = "0b8f9c3e-1111-4a4a-9c9c-123456789abc") -> tuple[Any, ...]:
    """A staged delta, in the order of kalshi_store.rows.ORDERBOOK_DELTAS."""
    return (1, 2, seq, "M-1", market_id, "yes" if seq % 2 else "no", Decimal("0.4200"), Decimal("-3.50"),
            client_order_id, None, ts_ms, received_ns)


@pytest.mark.asyncio
async def test_the_same_batch_written_twice_is_stored_once(db_url: str) -> None:
    received_ns = time.time_ns()
    now_ms = received_ns // 1_000_000
    rows = [delta_row(1, ts_ms=now_ms - 7, received_ns=received_ns),
            delta_row(2, ts_ms=None, received_ns=received_ns + 1000, market_id=""),
            delta_row(3, ts_ms=now_ms - 86_400_000 * 40, received_ns=received_ns + 2000),  # 40 days off: extras
            delta_row(4, ts_ms=now_ms, received_ns=received_ns + 3000, client_order_id="mine")]
    session_id, today = str(uuid.uuid4()), datetime.now(UTC).date()
    batch = Batch(batch_id=1, session_id=session_id, session_date=today, tables={"orderbook_deltas": rows})
    writer = await CopyWriter.connect(db_url)
    try:
        first = await writer.write(batch)
        second = await writer.write(batch)
        # The writer remembers the books it stored; if they are gone (a restored database), it stores them again
        # rather than skip the deltas.
        with psycopg.connect(db_url) as conn:
            conn.execute("delete from kalshi.orderbook_delta_rows")
            conn.execute("delete from kalshi.orderbook_delta_extras")
            conn.execute("delete from kalshi.orderbook_delta_books")
        third = await writer.write(batch)
    finally:
        await writer.close()
    assert (first.inserted["orderbook_deltas"], first.duplicates["orderbook_deltas"]) == (4, 0)
    assert (second.inserted["orderbook_deltas"], second.duplicates["orderbook_deltas"]) == (0, 4)
    assert (third.inserted["orderbook_deltas"], third.duplicates["orderbook_deltas"]) == (4, 0)
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        stored = conn.execute("select seq, market_id, exchange_ts, client_order_id, received_at "
                              "from kalshi.orderbook_deltas where session_id = %s order by seq",
                              (session_id,)).fetchall()
        counts = conn.execute("select (select count(*) from kalshi.orderbook_delta_rows), "
                              "(select count(*) from kalshi.orderbook_delta_extras)").fetchone()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert stored == [
        (seq, market_id or None, None if ts is None else epoch + timedelta(milliseconds=ts), coid,
         epoch + timedelta(microseconds=received // 1000))
        for (_, _, seq, _, market_id, _, _, _, coid, _, ts, received) in rows]
    assert counts == (4, 2)


def test_compacting_packs_finished_days_only(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        for row in OLD_ROWS:
            conn.execute(f"insert into kalshi.orderbook_deltas ({COLUMNS}) values "  # noqa: S608 - constants
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
        conn.execute("select kalshi.ensure_partitions(1, 30)")
        before = select(conn, f"select {COLUMNS} from kalshi.orderbook_deltas order by {ORDER}")  # noqa: S608
        today = datetime.now(UTC).date()
        packed = select(conn, "select partition_name from kalshi.compact_delta_partitions(current_date)")
        after = select(conn, f"select {COLUMNS} from kalshi.orderbook_deltas order by {ORDER}")  # noqa: S608
    names = [name for (name,) in packed]
    # The finished days with rows, packed; yesterday's partition (empty: nothing to pack, nor to mark packed, so
    # rows that reach it later are packed then) and today's are not.
    assert names == sorted({f"kalshi.orderbook_delta_rows_p{row[1]:%Y%m%d}" for row in OLD_ROWS})
    assert f"kalshi.orderbook_delta_rows_p{today - timedelta(days=1):%Y%m%d}" not in names
    assert f"kalshi.orderbook_delta_rows_p{today:%Y%m%d}" not in names
    with psycopg.connect(db_url) as conn:
        assert select(conn, "select partition_name from kalshi.compact_delta_partitions(current_date)") == []
    assert after == before and len(after) == len(OLD_ROWS)


@pytest.mark.asyncio
async def test_deltas_without_a_market_id_and_with_an_empty_one_share_their_book(db_url: str) -> None:
    """The writer resolves books itself: a market_id of None and of '' are the same book ('' is stored), found
    in one statement even when both are new in the same batch."""
    received_ns = time.time_ns()
    rows = [(1, 2, seq, "M-1", market_id, "yes", Decimal("0.4200"), Decimal(seq), None, None, None,
             received_ns + seq) for seq, market_id in ((1, None), (2, ""), (3, None))]
    session_id, today = str(uuid.uuid4()), datetime.now(UTC).date()
    writer = await CopyWriter.connect(db_url)
    try:
        first = await writer.write(Batch(batch_id=1, session_id=session_id, session_date=today,
                                         tables={"orderbook_deltas": rows[:2]}))
        second = await writer.write(Batch(batch_id=2, session_id=session_id, session_date=today,
                                          tables={"orderbook_deltas": rows}))
    finally:
        await writer.close()
    assert first.inserted["orderbook_deltas"] == 2 and second.inserted["orderbook_deltas"] == 1
    with psycopg.connect(db_url) as conn:
        books = conn.execute("select market_id from kalshi.orderbook_delta_books where session_id = %s",
                             (session_id,)).fetchall()
        stored = conn.execute("select seq, market_id, delta from kalshi.orderbook_deltas where session_id = %s "
                              "order by seq", (session_id,)).fetchall()
    assert books == [("",)]
    assert stored == [(1, None, Decimal(1)), (2, None, Decimal(2)), (3, None, Decimal(3))]
