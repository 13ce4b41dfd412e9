"""Retention: drop whole days of market data older than N days (``kalshi-ingest db retention --keep-days N``).

Only the day-partitioned tables (trades, order book snapshots and deltas, tickers) shrink; sessions, the gap
ledger, dead letters and the small tables are kept. The work is done by ``kalshi.drop_partitions_before(date)``
(sql/004), so it can also be run from ``psql``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

__all__ = ["apply_retention", "ensure_partitions"]


def apply_retention(url: str, keep_days: int, *, today: date | None = None) -> list[tuple[str, str, int]]:
    """Drop partitions of days before ``today - keep_days`` (UTC); returns ``(table, action, rows)`` per change.

    ``keep_days=0`` keeps only today. Rows of older days stuck in a default partition are deleted too.
    """
    if keep_days < 0:
        raise ValueError(f"keep_days must be >= 0, not {keep_days}")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select * from kalshi.drop_partitions_before(%s)", (cutoff,)).fetchall()
    return [(str(name), str(action), int(count)) for name, action, count in rows]


def ensure_partitions(url: str, days_ahead: int = 7) -> int:
    """Create day partitions from yesterday to ``days_ahead`` days ahead; returns how many were created."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select kalshi.ensure_partitions(%s)", (days_ahead,)).fetchone()
    return int(row[0]) if row else 0
