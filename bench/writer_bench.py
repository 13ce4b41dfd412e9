"""Writer throughput: COPY into staging + INSERT ... ON CONFLICT DO NOTHING, against one INSERT + commit per row.

Not a test. Prints rows/s (median of 3 runs) for:

* ``copy trades``: batches of trades only;
* ``copy mixed``: a realistic mix (75 % order book deltas, 15 % tickers, 9 % trades, 1 % snapshots of 20 levels
  a side);
* ``copy redelivered``: the mixed batches written a second time (every row a duplicate);
* ``row-by-row``: the baseline, one ``INSERT ... ON CONFLICT DO NOTHING`` and one commit per trade;
* ``on_message``: the recorder's hot path (ns per message: type dispatch, build the tuple, append).

Usage::

    python bench/writer_bench.py                      # a throwaway embedded server (default durable settings)
    python bench/writer_bench.py --url postgresql://...  # an existing database (the kalshi schema is applied)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

from kalshi_store.batch import Batch, SessionManifest
from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.migrations import migrate
from kalshi_store.rows import RowBuilders
from kalshi_store.writer import CopyWriter
from kalshi_ws import messages as m

TS_MS = 1_795_600_000_000


def trade(i: int) -> m.Trade:
    price = Decimal(i % 9999 + 1).scaleb(-4)
    return m.Trade(sid=1, seq=i, msg=m.TradePayload(
        trade_id=str(uuid.UUID(int=i)), market_ticker=f"KXBTCD-25AUG0517-T{i % 40}", yes_price_dollars=price,
        no_price_dollars=1 - price, count_fp=Decimal("75.25"), taker_outcome_side="yes", taker_book_side="bid",
        taker_side="yes", ts_ms=TS_MS + i, ts=(TS_MS + i) // 1000))


def delta(i: int) -> m.OrderbookDelta:
    return m.OrderbookDelta(sid=2, seq=i, msg=m.OrderbookDeltaPayload(
        market_ticker=f"HIGHNY-22DEC23-B{i % 40}", market_id="0b8f9c3e-1111-4a4a-9c9c-123456789abc",
        price_dollars=Decimal(i % 99 + 1).scaleb(-2).quantize(Decimal("0.0001")), delta_fp=Decimal("-75.25"),
        side="yes" if i % 2 else "no", ts_ms=TS_MS + i))


def ticker(i: int) -> m.Ticker:
    return m.Ticker(sid=3, msg=m.TickerPayload(
        market_ticker=f"KXBTCD-25AUG0517-T{i % 40}", market_id="7c1b", price_dollars=Decimal("0.4150"),
        yes_bid_dollars=Decimal("0.4100"), yes_ask_dollars=Decimal("0.4200"), volume_fp=Decimal(i).scaleb(-2),
        open_interest_fp=Decimal("10.00"), dollar_volume=i, dollar_open_interest=7,
        yes_bid_size_fp=Decimal("75.25"), yes_ask_size_fp=Decimal("1.00"), last_trade_size_fp=Decimal("0.01"),
        ts_ms=TS_MS + i))


def snapshot(i: int) -> m.OrderbookSnapshot:
    levels = [(Decimal(p).scaleb(-2).quantize(Decimal("0.0001")), Decimal("10.50")) for p in range(1, 21)]
    return m.OrderbookSnapshot(sid=2, seq=i, msg=m.OrderbookSnapshotPayload(
        market_ticker=f"HIGHNY-22DEC23-B{i % 40}", market_id="x", yes_dollars_fp=levels, no_dollars_fp=levels))


def mixed(i: int) -> m.DataMessage:
    r = i % 100
    if r < 75:
        return delta(i)
    if r < 90:
        return ticker(i)
    if r < 99:
        return trade(i)
    return snapshot(i)


def build_batches(session: SessionManifest, make: Callable[[int], m.DataMessage], start: int, total: int,
                  batch_rows: int) -> list[Batch]:
    builders = RowBuilders(session.session_id, session.started_at.date())
    batches = []
    for first in range(start, start + total, batch_rows):
        tables: dict[str, list[tuple[object, ...]]] = {}
        for i in range(first, min(first + batch_rows, start + total)):
            message = make(i)
            table, build = builders.dispatch[type(message)]
            tables.setdefault(table, []).append(build(message, 1, time.time_ns()))
        batches.append(Batch(batch_id=first, session=session, session_id=builders.session_id,
                             session_date=builders.session_date, tables=tables))
    return batches


async def copy_rate(url: str, batches: list[Batch]) -> float:
    writer = await CopyWriter.connect(url)
    try:
        rows = sum(b.row_count for b in batches)
        started = time.perf_counter()
        for batch in batches:
            await writer.write(batch)
        return rows / (time.perf_counter() - started)
    finally:
        await writer.close()


def row_by_row_rate(url: str, batches: list[Batch]) -> float:
    insert = """insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count,
        taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts, received_at, source,
        session_id, generation, sid, seq)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(0) + %s * interval '1 millisecond',
        to_timestamp(0) + %s / 1000 * interval '1 microsecond', %s, %s, %s, %s, %s)
        on conflict do nothing"""
    rows = [r for b in batches for r in b.tables["trades"]]
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for r in rows:
            conn.execute(insert, (r[0], date(2026, 11, 25), *r[1:9], r[9], r[12], *r[13:]))
            conn.commit()
        return len(rows) / (time.perf_counter() - started)


def on_message_ns(session_id: str) -> float:
    builders = RowBuilders(session_id, date(2026, 11, 25))
    lists: dict[str, list[tuple[object, ...]]] = {name: [] for name, _ in builders.dispatch.values()}
    dispatch = {cls: (lists[table], build) for cls, (table, build) in builders.dispatch.items()}
    messages = [mixed(i) for i in range(50_000)]
    gc.collect()
    started = time.perf_counter_ns()
    for message in messages:
        entry = dispatch[type(message)]
        entry[0].append(entry[1](message, 1, 0))
    return (time.perf_counter_ns() - started) / len(messages)


def median_of(runs: int, fn: Callable[[int], float]) -> float:
    return statistics.median(fn(run) for run in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="database URL (default: a throwaway embedded server)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows per COPY run")
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--baseline-rows", type=int, default=3000, help="rows per row-by-row run")
    args = parser.parse_args()

    tmp: Path | None = None
    server: EmbeddedPostgres | None = None
    url = args.url
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="kalshi-writer-bench-"))
        server = EmbeddedPostgres(tmp / "data")
        server.start()
        url = server.create_database("bench")
    try:
        migrate(url)
        session = SessionManifest(session_id=str(uuid.uuid4()), market_set="bench", environment="bench",
                                  started_at=datetime.now(UTC))
        n, size = args.rows, args.batch_rows
        print(f"writer benchmark: {n} rows per run, batches of {size}, median of 3")
        hot_path = median_of(3, lambda run: on_message_ns(session.session_id))
        results: dict[str, float] = {}
        mixed_sets = [build_batches(session, mixed, 10_000_000 * (run + 1), n, size) for run in range(3)]
        results["copy trades"] = median_of(3, lambda run: asyncio.run(copy_rate(
            url, build_batches(session, trade, 1_000_000 * (run + 1), n, size))))
        results["copy mixed"] = median_of(3, lambda run: asyncio.run(copy_rate(url, mixed_sets[run])))
        results["copy redelivered"] = median_of(3, lambda run: asyncio.run(copy_rate(url, mixed_sets[run])))
        results["row-by-row"] = median_of(3, lambda run: row_by_row_rate(
            url, build_batches(session, trade, 50_000_000 * (run + 1), args.baseline_rows, size)))
        for name, rate in results.items():
            print(f"  {name:<18} {rate:>10,.0f} rows/s")
        print(f"  copy / row-by-row  {results['copy trades'] / results['row-by-row']:>10.1f} x")
        print(f"  on_message         {hot_path:>10.0f} ns/msg (mixed stream, tuple built and appended)")
    finally:
        if server is not None:
            server.stop("fast")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
