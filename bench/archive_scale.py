"""The archive tier over the compact layout (050): archive throughput and size, and the read side's speed on hot and
archived days, in one run (issue 14, part 4).

    python -m bench.archive_scale --deltas 2000000 --days 4

One embedded PostgreSQL in a temporary folder: the migrations up to 040, the month-like volume of
:mod:`bench.storage_scale` (``--deltas`` over ``--markets`` markets and ``--days`` day partitions, a tenth as many
trades and tickers, one snapshot per market and day), then the current migrations (050 moves the deltas into the
compact tables); then every day older than 2 days is archived (:func:`kalshi_store.archive.archive_older_than`:
read, written, read back and compared, partitions dropped) to a temporary folder: bytes per row and rows per
second per table and day. The archive holds logical rows (the view's columns), so its size does not depend on the
hot layout.

Then, after ``analyze`` (autovacuum's job on a live database), the read side (:class:`kalshi_ingest.data.MarketData`)
on ``--probes`` markets, for one archived day and one hot day each: trades of the day, 5-minute bars of the day, top
of book of the day, the book at noon, the book replayed over an hour from noon. Each call is timed ``--calls`` times on one ``MarketData`` (as a notebook uses it):
the first call (archived days: the Parquet files read; hot: a connection opened) and the median of the others
(archived days read again from its cache while the files are unchanged). Printed as a table and written to
``bench/results/archive-scale-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.storage_scale import generate, ticker_of  # noqa: E402
from kalshi_ingest.data import MarketData  # noqa: E402
from kalshi_store import archive  # noqa: E402
from kalshi_store.embedded import EmbeddedPostgres  # noqa: E402
from kalshi_store.migrations import migrate  # noqa: E402

#: The read-side calls timed, each for one market and one day (``noon``: 12:00 UTC of the day).
READS: dict[str, Callable[[MarketData, str, datetime], Any]] = {
    "trades (day)": lambda md, m, noon: md.trades(m, noon - timedelta(hours=12), noon + timedelta(hours=12)),
    "bars 5min (day)": lambda md, m, noon: md.bars(m, "5min", noon - timedelta(hours=12), noon + timedelta(hours=12)),
    "top of book (day)": lambda md, m, noon: md.top_of_book(m, noon - timedelta(hours=12),
                                                            noon + timedelta(hours=12)),
    "book at (noon)": lambda md, m, noon: md.book_at(m, noon),
    "replay (1 h)": lambda md, m, noon: md.book_replay(m, noon, noon + timedelta(hours=1)),
}


def archive_figures(moved: list[archive.Moved]) -> list[dict[str, Any]]:
    """Per table, all archived days together: rows, bytes, B/row, rows/s."""
    figures = []
    for table in archive.ARCHIVED_TABLES:
        rows = sum(m.rows for m in moved if m.table == table)
        size = sum(m.bytes for m in moved if m.table == table)
        seconds = sum(m.seconds for m in moved if m.table == table)
        if rows:
            figures.append({"table": table, "days": sum(1 for m in moved if m.table == table), "rows": rows,
                            "bytes": size, "bytes_per_row": size / rows, "rows_per_s": rows / seconds,
                            "seconds": seconds})
    return figures


def read_figures(url: str, archive_url: str, markets: list[str], days: dict[str, date],
                 calls: int) -> list[dict[str, Any]]:
    """Each read of :data:`READS` on each tier's day for ``markets``: rows returned, first call and median of the
    other calls (ms; medians over markets of each)."""
    figures = []
    for tier, day in days.items():
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        for name, call in READS.items():
            firsts, medians, rows = [], [], []
            for market in markets:
                data = MarketData(url, archive_url=archive_url)
                times = []
                for _ in range(calls):
                    started = time.perf_counter()
                    frame = call(data, market, noon)
                    times.append((time.perf_counter() - started) * 1000)
                firsts.append(times[0])
                medians.append(statistics.median(times[1:]) if calls > 1 else times[0])
                rows.append(len(frame))
                data.engine.dispose()
            figures.append({"tier": tier, "day": day.isoformat(), "read": name, "rows": statistics.median(rows),
                            "first_ms": statistics.median(firsts), "median_ms": statistics.median(medians)})
            print(f"  {tier:8} {name:18} {figures[-1]['median_ms']:8.1f} ms", flush=True)
    return figures


def print_report(report: dict[str, Any]) -> None:
    size = report["size"]
    print(f"\n{size['deltas']:,} deltas, {size['markets']:,} markets, {size['days']} days; "
          f"050 moved them in {report['migrate_050_s']:.1f} s; archive run {report['archive_run_s']:.1f} s")
    print(f"\n{'table':20} {'days':>4} {'rows':>12} {'bytes':>12} {'B/row':>7} {'rows/s':>9}")
    for f in report["archive"]:
        print(f"{f['table']:20} {f['days']:>4} {f['rows']:>12,} {f['bytes']:>12,} {f['bytes_per_row']:7.2f} "
              f"{f['rows_per_s']:>9,.0f}")
    print(f"\nread side, {len(report['markets'])} markets x {report['calls']} calls "
          "(ms: first call, median of the others; medians over the markets)")
    print(f"{'read':18} {'tier':8} {'rows':>7} {'first ms':>9} {'median ms':>10}")
    for f in report["reads"]:
        print(f"{f['read']:18} {f['tier']:8} {f['rows']:>7,.0f} {f['first_ms']:9.1f} {f['median_ms']:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=2_000_000)
    parser.add_argument("--markets", type=int, default=3000)
    parser.add_argument("--days", type=int, default=4, help="day partitions (at least 3: archived and hot days)")
    parser.add_argument("--probes", type=int, default=3, help="markets read by the read-side timings")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per read, market and day")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.days < 3:
        parser.error("--days: at least 3 (days older than 2 are archived, the others stay hot)")

    folder = Path(tempfile.mkdtemp(prefix="archive-scale-"))
    server = EmbeddedPostgres(folder / "postgres")
    server.start()
    today = datetime.now(UTC).date()
    first = today - timedelta(days=args.days)
    markets = [ticker_of(k * args.markets // args.probes) for k in range(args.probes)]
    try:
        url = server.create_database("archive_scale")
        migrate(url, before=50)  # the layout before 050
        generate(url, deltas=args.deltas, markets=args.markets, days=args.days, first=first)
        started = time.perf_counter()
        migrate(url)
        migrated = time.perf_counter() - started
        print(f"050 moved the data in {migrated:.1f} s", flush=True)
        started = time.perf_counter()
        moved = archive.archive_older_than(url, str(folder / "archive"), 2)
        total = time.perf_counter() - started
        for m in moved:
            print(f"{m.table:20} {m.day}  {m.rows:>10,} rows  {m.bytes:>12,} B  {m.bytes_per_row:6.2f} B/row  "
                  f"{m.rows / m.seconds:>9,.0f} rows/s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("analyze")  # what autovacuum does on a live database; the reads are planned with statistics
        archived_day = max(m.day for m in moved if m.table == "orderbook_deltas")
        reads = read_figures(url, str(folder / "archive"), markets,
                             {"archived": archived_day, "hot": today - timedelta(days=1)}, args.calls)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "size": {"deltas": args.deltas, "markets": args.markets, "days": args.days},
              "migrate_050_s": migrated, "archive_run_s": total, "archive": archive_figures(moved),
              "archived_days": [{"table": m.table, "day": m.day.isoformat(), "rows": m.rows, "bytes": m.bytes,
                                 "seconds": m.seconds} for m in moved],
              "markets": markets, "calls": args.calls, "reads": reads}
    print_report(report)
    out = args.out or ROOT / "bench" / "results" / f"archive-scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
