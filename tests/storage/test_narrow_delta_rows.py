"""080: order book delta rows keyed by a 16-byte (book_key, seq) per partition, exactly and idempotently."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from kalshi_store.batch import Batch
from kalshi_store.migrations import migrate
from kalshi_store.writer import CopyWriter

COLUMNS = ("session_id, session_date, generation, sid, seq, market_ticker, market_id, side, price, delta, "
           "client_order_id, subaccount, exchange_ts, received_at")
ORDER = "session_id, generation, sid, seq, market_ticker, side"
RECEIVED = datetime(2026, 11, 25, 9, 46, 40, 123456, tzinfo=UTC)
SESSION = str(uuid.uuid4())
DAY = date(2026, 11, 25)
MARKET_ID = "0b8f9c3e-1111-4a4a-9c9c-123456789abc"


def delta(seq: int, *, exchange_ts: datetime | None, side: str = "yes", client_order_id: str | None = None,
          market: str = "M-1", sid: int = 2) -> tuple[Any, ...]:
    return (SESSION, DAY, 1, sid, seq, market, MARKET_ID, side, Decimal("0.4200"), Decimal("-54.00"),
            client_order_id, None, exchange_ts, RECEIVED + timedelta(microseconds=seq % 1000))


#: What the 050 layout held and the 080 one must keep exactly: exchange times 7 ms, 32.767 s, 32.768 s, a minute
#: and 40 days before the receive time, one after it, none; our own order; seqs beyond 2^31 (three books of one
#: stream: seq >> 31 = 0, 1 and 2^9) and below 0.
OLD_ROWS: list[tuple[Any, ...]] = [
    delta(10, exchange_ts=RECEIVED.replace(microsecond=116000)),
    delta(11, exchange_ts=RECEIVED.replace(microsecond=0) - timedelta(milliseconds=32767 - 123)),
    delta(12, exchange_ts=RECEIVED.replace(microsecond=0) - timedelta(milliseconds=32768 - 123)),
    delta(13, exchange_ts=RECEIVED - timedelta(minutes=1, microseconds=456)),
    delta(14, exchange_ts=RECEIVED - timedelta(days=40, microseconds=456)),
    delta(15, exchange_ts=RECEIVED.replace(microsecond=0) + timedelta(seconds=20)),
    delta(16, exchange_ts=None, side="no"),
    delta(17, exchange_ts=RECEIVED - timedelta(minutes=2, microseconds=456), client_order_id="mine"),
    delta(2**31 - 1, exchange_ts=RECEIVED.replace(microsecond=123000)),
    delta(2**31, exchange_ts=RECEIVED.replace(microsecond=123000)),
    delta(2**31 + 5, exchange_ts=RECEIVED - timedelta(minutes=1, microseconds=456), client_order_id="mine too"),
    delta(2**40 + 7, exchange_ts=RECEIVED.replace(microsecond=120000)),
    delta(-3, exchange_ts=RECEIVED.replace(microsecond=120000), market="M-2"),
]


def insert(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        conn.execute(f"insert into kalshi.orderbook_deltas ({COLUMNS}) values "  # noqa: S608 - constants
                     "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row)


def deltas(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    conn.execute("set time zone 'UTC'")
    return conn.execute(f"select {COLUMNS} from kalshi.orderbook_deltas order by {ORDER}").fetchall()  # noqa: S608


def test_080_moves_every_delta_exactly(empty_db_url: str) -> None:
    migrate(empty_db_url, before=80)
    with psycopg.connect(empty_db_url) as conn:
        insert(conn, OLD_ROWS)
        conn.commit()
        before = deltas(conn)
    assert migrate(empty_db_url) == ["080_narrow_delta_rows.sql"]
    with psycopg.connect(empty_db_url) as conn:
        after = deltas(conn)
        books = conn.execute("select seq_high from kalshi.orderbook_delta_books where market_ticker = 'M-1' "
                             "order by 1").fetchall()
        kept = conn.execute("select seq, exchange_ts is not null, client_order_id from kalshi.orderbook_delta_extras "
                            "order by seq").fetchall()
        widest = conn.execute("select max(pg_column_size(d.*)) from kalshi.orderbook_delta_rows d").fetchone()
        # The same delta again, through the view: the partition's key (book_key, seq) skips it.
        insert(conn, OLD_ROWS[:1] + OLD_ROWS[-3:])
        again = deltas(conn)
    assert len(before) == len(OLD_ROWS)
    assert after == before
    assert [str(a[9]) for a in after] == ["-54.00"] * len(OLD_ROWS)
    assert again == after
    assert books == [(0,), (0,), (1,), (512,)]  # yes and no at 0, then yes
    # The extras moved with the new seq (the low 31 bits): our own orders, an exchange time 40 days away.
    assert kept == [(5, False, "mine too"), (14, True, None), (17, False, "mine")]
    assert widest == (58,)  # 24 header + 34 data: a 64-byte tuple once aligned in the page


def staged(seq: int, *, ts_ms: int | None, received_ns: int, side: str = "yes") -> tuple[Any, ...]:
    """A staged delta, in the order of kalshi_store.rows.ORDERBOOK_DELTAS."""
    return (1, 2, seq, "M-1", MARKET_ID, side, Decimal("0.4200"), Decimal("-3.00"), None, None, ts_ms, received_ns)


@pytest.mark.asyncio
async def test_the_writer_stores_seqs_past_2_31_and_far_exchange_times_exactly_and_once(db_url: str) -> None:
    received_ns = time.time_ns()
    now_ms = received_ns // 1_000_000
    low = [staged(2**31 - 2 + i, ts_ms=now_ms - 5 * i, received_ns=received_ns + i * 1000) for i in range(2)]
    far = 86_400_000 * 40  # 40 days: kept in the extras
    mixed = [staged(2**31 + i, ts_ms=now_ms - far if i == 1 else now_ms, received_ns=received_ns + i * 1000)
             for i in range(3)] + [staged(7, ts_ms=now_ms + 33_000, received_ns=received_ns, side="no")]
    session_id, today = str(uuid.uuid4()), datetime.now(UTC).date()
    writer = await CopyWriter.connect(db_url)
    try:
        results = []
        for i, rows in enumerate((low, mixed, mixed, low + mixed)):
            batch = Batch(batch_id=i, session_id=session_id, session_date=today, tables={"orderbook_deltas": rows})
            result = await writer.write(batch)
            results.append((result.inserted["orderbook_deltas"], result.duplicates["orderbook_deltas"]))
    finally:
        await writer.close()
    assert results == [(2, 0), (4, 0), (0, 4), (0, 6)]
    with psycopg.connect(db_url) as conn:
        conn.execute("set time zone 'UTC'")
        stored = conn.execute("select seq, side, exchange_ts, received_at from kalshi.orderbook_deltas "
                              "where session_id = %s order by seq", (session_id,)).fetchall()
        books = conn.execute("select side, seq_high from kalshi.orderbook_delta_books where session_id = %s "
                             "order by 1, 2", (session_id,)).fetchall()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = sorted((seq, side, epoch + timedelta(milliseconds=ts), epoch + timedelta(microseconds=ns // 1000))
                      for (_, _, seq, _, _, side, _, _, _, _, ts, ns) in low + mixed)
    assert stored == expected
    assert books == [("no", 0), ("yes", 0), ("yes", 1)]


def test_new_partitions_of_the_delta_rows_get_their_key(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        created = conn.execute("select kalshi.ensure_partitions(12)").fetchone()
        keys = conn.execute("""
            select c.relname, pg_get_indexdef(i.indexrelid)
            from pg_inherits h
            join pg_class c on c.oid = h.inhrelid
            left join pg_index i on i.indrelid = c.oid and i.indisunique
            where h.inhparent = 'kalshi.orderbook_delta_rows'::regclass
            order by 1""").fetchall()
        day = (datetime.now(UTC) + timedelta(days=11)).date()
        row = (SESSION, day, 1, 2, 5, "M-9", MARKET_ID, "yes", Decimal("0.01"), Decimal("1"), None, None, None,
               RECEIVED)
        insert(conn, [row, row])
        stored = conn.execute("select count(*) from kalshi.orderbook_deltas where session_date = %s",
                              (day,)).fetchone()
    assert created and created[0] >= 5
    assert keys and all(definition is not None and definition.endswith("USING btree (book_key, seq)")
                        for _, definition in keys), keys
    assert stored == (1,)


@pytest.mark.asyncio
async def test_a_delta_whose_seq_is_no_bigint_goes_to_dead_letter_alone(db_url: str) -> None:
    received_ns = time.time_ns()
    good = [staged(seq, ts_ms=received_ns // 1_000_000, received_ns=received_ns + seq) for seq in (1, 2**31 + 1)]
    poison = [staged(2**63, ts_ms=None, received_ns=received_ns), staged(-(2**63) - 1, ts_ms=None, received_ns=1),
              (*staged(0, ts_ms=None, received_ns=received_ns)[:2], None, *staged(0, ts_ms=None, received_ns=1)[3:])]
    session_id, today = str(uuid.uuid4()), datetime.now(UTC).date()
    dead_before = dead_deltas(db_url)
    writer = await CopyWriter.connect(db_url)
    try:
        result = await writer.write(Batch(batch_id=1, session_id=session_id, session_date=today,
                                          tables={"orderbook_deltas": [poison[0], good[0], poison[1], good[1],
                                                                       poison[2]]}))
    finally:
        await writer.close()
    assert (result.inserted["orderbook_deltas"], result.unstorable) == (2, 3)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("select seq from kalshi.orderbook_deltas where session_id = %s order by seq",
                              (session_id,)).fetchall()
    assert stored == [(1,), (2**31 + 1,)]
    # Each kept whole in dead_letter (its seq column empty: no bigint holds it; the raw row has it).
    dead = dead_deltas(db_url)
    assert sorted(v for k, v in dead.items() if k not in dead_before) == sorted(
        [(None, f'"seq":{2**63}'), (None, f'"seq":{-(2**63) - 1}'), (None, '"seq":null')])


def dead_deltas(url: str) -> dict[Any, tuple[Any, str]]:
    """The dead_letter rows of deltas: id -> (seq column, the raw row's seq)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select id, seq, convert_from(raw, 'UTF8') from kalshi.dead_letter "
                            "where type = 'orderbook_deltas'").fetchall()
    return {r[0]: (r[1], next(part for part in r[2].split(",") if part.startswith('"seq"'))) for r in rows}
