"""The archive tier over the compact layout (050): bytes per archived row and archive throughput.

    python -m bench.archive_scale --deltas 2000000 --days 4

One embedded PostgreSQL in a temporary folder: the migrations up to 040, the month-like volume of
:mod:`bench.storage_scale` (``--deltas`` over ``--markets`` markets and ``--days`` day partitions, a tenth as many
trades and tickers), then the current migrations (050 moves the deltas into the compact tables); then every day
older than 2 days is archived (:func:`kalshi_store.archive.archive_older_than`: read, written, read back and
compared, partitions dropped) to a temporary folder. Prints bytes per row and rows per second per table and day.
The archive holds logical rows (the view's columns), so its size does not depend on the hot layout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.storage_scale import generate  # noqa: E402
from kalshi_store import archive  # noqa: E402
from kalshi_store.embedded import EmbeddedPostgres  # noqa: E402
from kalshi_store.migrations import migrate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=2_000_000)
    parser.add_argument("--markets", type=int, default=3000)
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="archive-scale-"))
    server = EmbeddedPostgres(folder / "postgres")
    server.start()
    try:
        url = server.create_database("archive_scale")
        migrate(url, before=50)  # the layout before 050
        first = datetime.now(UTC).date() - timedelta(days=args.days)
        generate(url, deltas=args.deltas, markets=args.markets, days=args.days, first=first)
        started = time.perf_counter()
        migrate(url)
        print(f"050 moved the data in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        moved = archive.archive_older_than(url, str(folder / "archive"), 2)
        total = time.perf_counter() - started
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    for m in moved:
        print(f"{m.table:20} {m.day}  {m.rows:>10,} rows  {m.bytes:>12,} B  {m.bytes_per_row:6.2f} B/row  "
              f"{m.rows / m.seconds:>9,.0f} rows/s")
    for table in archive.ARCHIVED_TABLES:
        rows = sum(m.rows for m in moved if m.table == table)
        size = sum(m.bytes for m in moved if m.table == table)
        seconds = sum(m.seconds for m in moved if m.table == table)
        if rows:
            print(f"{table:20} all days    {rows:>10,} rows  {size:>12,} B  {size / rows:6.2f} B/row  "
                  f"{rows / seconds:>9,.0f} rows/s")
    print(f"archive run: {total:.1f} s")


if __name__ == "__main__":
    main()
