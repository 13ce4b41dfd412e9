"""The Prefect flow of the archive tier: day partitions older than ``KALSHI_ARCHIVE_AFTER_DAYS`` move to Parquet files
at ``KALSHI_ARCHIVE_URL`` (kalshi_store.archive), verified row for row, then dropped from PostgreSQL.

Deployed daily by prefect.yaml (``archive-partitions/daily``). Each table-day is one task: it is safe to retry or
rerun (a file already written and matching its partition is verified and reused; one that does not match is never
trusted), so a crash or a cancelled run leaves nothing half done that the next run does not finish.

Before archiving, the run packs the indexes of every finished day partition of the order book deltas, trades and
ticker updates that is not packed yet and not archived by this run (:func:`kalshi_store.compaction.
compact_finished_days`: each day once, one transaction per day; about 106 B a delta become 97). The run's markdown
artifact (key ``archive``) lists the partitions packed (index bytes before and after) and what moved: table, day,
rows, bytes and bytes per row.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import date

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from kalshi_ingest.settings import Settings
from kalshi_store import archive, compaction

__all__ = ["archive_partitions", "moved_markdown"]


@task(name="archive-day", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30)
async def archive_day(db_url: str, archive_url: str, table: str, day: date,
                      windows: pa.Table | None = None) -> archive.Moved | None:
    """Move one day of one table (``windows``: the day's untrusted windows, computed before the run dropped
    anything); ``None`` when it is no longer there (an earlier run finished it)."""
    moved = await asyncio.to_thread(functools.partial(archive.archive_day, windows=windows), db_url, archive_url,
                                    table, day)
    if moved is not None:
        get_run_logger().info("archived kalshi.%s of %s: %d rows, %d bytes (%.1f B/row) in %.1f s", table, day,
                              moved.rows, moved.bytes, moved.bytes_per_row, moved.seconds)
    return moved


@task(name="compact-days", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30)
async def compact_days(db_url: str, today: date | None, skip: list[date]) -> list[compaction.Compacted]:
    """Pack the finished day partitions (deltas, trades, tickers) not packed yet, except the days ``skip``
    (archived by this run)."""
    packed = await asyncio.to_thread(compaction.compact_finished_days, db_url, today=today, skip=skip)
    for c in packed:
        get_run_logger().info("packed %s: indexes %d -> %d bytes in %.1f s", c.partition, c.bytes_before,
                              c.bytes_after, c.seconds)
    return packed


def moved_markdown(moved: list[archive.Moved], archive_url: str, older_than_days: int,
                   compacted: list[compaction.Compacted] | None = None) -> str:
    """The run's report: one line per day partition packed and per table-day moved, and the totals."""
    lines = [f"# Archive: partitions older than {older_than_days} days", "", f"Destination: `{archive_url}`", ""]
    if compacted:
        lines += ["## Day partitions packed", "", "| day | partition | index bytes before | after | seconds |",
                  "|---|---|---:|---:|---:|"]
        lines += [f"| {c.day} | {c.partition} | {c.bytes_before:,} | {c.bytes_after:,} | {c.seconds:.1f} |"
                  for c in compacted]
        lines += ["", "## Archived", ""]
    elif compacted is not None:
        lines += ["No day partition to pack.", ""]
    if not moved:
        return "\n".join([*lines, "Nothing to archive."])
    lines += ["| table | day | rows | bytes | B/row | rows/s |", "|---|---|---:|---:|---:|---:|"]
    for m in moved:
        rate = m.rows / m.seconds if m.seconds else 0.0
        lines.append(f"| {m.table} | {m.day} | {m.rows:,} | {m.bytes:,} | {m.bytes_per_row:.1f} | {rate:,.0f} |")
    rows, size = sum(m.rows for m in moved), sum(m.bytes for m in moved)
    lines.append(f"| **total** | {len(moved)} table-days | {rows:,} | {size:,} | {size / max(rows, 1):.1f} | |")
    return "\n".join(lines)


@flow(name="archive-partitions", log_prints=False)
async def archive_partitions(older_than_days: int | None = None, archive_url: str | None = None,
                             today: date | None = None) -> list[archive.Moved]:
    """Pack the finished day partitions (once each), then archive every day partition older than
    ``older_than_days`` (default ``KALSHI_ARCHIVE_AFTER_DAYS``) to ``archive_url`` (default ``KALSHI_ARCHIVE_URL``);
    ``today`` (default: the UTC date) is where the age counts from."""
    settings = Settings()
    destination = archive_url or settings.kalshi_archive_url
    if not destination:
        raise ValueError("no archive destination: set KALSHI_ARCHIVE_URL (a folder or an object-store URL) on the "
                         "worker, or pass archive_url")
    age = older_than_days if older_than_days is not None else settings.kalshi_archive_after_days
    from kalshi_store.embedded import ensure_database

    db_url = await asyncio.to_thread(ensure_database, settings.database(), settings.data_dir)
    todo = await asyncio.to_thread(archive.days_to_archive, db_url, age, today=today)
    get_run_logger().info("%d table-days to archive to %s", len(todo), destination)
    compacted = await compact_days(db_url, today, sorted(archive.days_not_to_pack(todo)))
    windows = await asyncio.to_thread(archive.day_windows, db_url, todo)
    moved = [m for table, day in todo
             if (m := await archive_day(db_url, destination, table, day, windows[day])) is not None]
    await acreate_markdown_artifact(key="archive", markdown=moved_markdown(moved, destination, age, compacted),
                                    description=f"{len(compacted)} day partitions packed, {len(moved)} table-days "
                                                f"moved to {destination}")
    return moved
