"""What the recorder hands to the writer (and to the spill): one :class:`Batch` of rows, ledger operations and
session bookkeeping, written in one transaction.

A batch is self-contained so that it can be written later by another process (``kalshi-ingest db replay``):
it carries the session manifest (the session row is created if the database was down when the session
opened) and a snapshot of the session's counters. Writing the same batch twice changes nothing: rows are
deduplicated by their natural keys, ledger rows and dead letters by ids assigned when they were created, and
the session's ``written`` counters only grow by rows that were actually new.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import msgspec

from .rows import Row

__all__ = ["Batch", "LedgerOp", "SessionManifest", "SessionProgress"]


class SessionManifest(msgspec.Struct, frozen=True, kw_only=True):
    """The ``kalshi.sessions`` row as created when the session opens."""

    session_id: str
    market_set: str
    environment: str
    markets: list[str] = []
    channels: list[str] = []
    use_yes_price: bool = False
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    started_at: datetime
    flow_run_id: str | None = None
    host: str | None = None


class SessionProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Absolute values of a session's counters at ``at``; an older snapshot never overwrites a newer one."""

    session_id: str
    at: datetime
    received: dict[str, int] = {}
    rows_spilled: int = 0
    reconnects: int = 0
    gaps: int = 0
    max_message_age_ms: int | None = None
    paused_count: int = 0
    paused_seconds: float = 0.0
    status: str | None = None
    status_message: str | None = None
    ended_at: datetime | None = None


class LedgerOp(msgspec.Struct, frozen=True, kw_only=True):
    """One change to ``kalshi.gap_ledger``.

    * ``open``: insert the row ``event_id`` (kind, sid, markets, seqs, ``at_ns`` = started_at; ``ended_ns`` set
      for events that are over when reported).
    * ``close_incident``: insert a ``recovery`` row ``event_id`` and close every open row of ``incident_id``
      (ended_at = ``at_ns``, ``outcome``).
    * ``close_event``: close the single row ``target_event_id``.
    * ``annotate_incident``: merge ``detail`` into the open rows of ``incident_id``.
    """

    op: Literal["open", "close_incident", "close_event", "annotate_incident"]
    event_id: str
    session_id: str
    at_ns: int
    generation: int | None = None
    incident_id: int | None = None
    kind: str = "recovery"
    sid: int | None = None
    channel: str | None = None
    markets: list[str] = []
    expected_seq: int | None = None
    received_seq: int | None = None
    ended_ns: int | None = None
    outcome: str | None = None
    target_event_id: str | None = None
    detail: dict[str, Any] = {}


class Batch(msgspec.Struct, kw_only=True):
    """Rows per target table (tuples in :mod:`kalshi_store.rows` order) plus ledger ops and session bookkeeping."""

    batch_id: int
    session: SessionManifest | None = None
    #: The session every row belongs to and its day: tables with ``TableSpec.constants`` (the order book
    #: tables) take them from here rather than from each row. Required when such rows are present.
    session_id: str | None = None
    session_date: date | None = None
    tables: dict[str, list[Row]] = {}
    ledger: list[LedgerOp] = []
    progress: SessionProgress | None = None

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.tables.values())

    @property
    def is_empty(self) -> bool:
        return not self.tables and not self.ledger and self.session is None and self.progress is None


def split_tables(tables: dict[str, list[Row]], limit: int) -> list[dict[str, list[Row]]]:
    """Cut rows per table into pieces of at most ``limit`` rows in all, in order (one empty piece for none).

    A batch bounds what one write or one spill record must take at once: a batch that waited while the
    database was slow to answer is cut, so a spill disk with room for some of it takes that much."""
    if sum(len(rows) for rows in tables.values()) <= limit:
        return [tables]  # the usual batch: as it is, no copy
    pieces: list[dict[str, list[Row]]] = [{}]
    room = limit
    for name, rows in tables.items():
        start = 0
        while start < len(rows):
            if room == 0:
                pieces.append({})
                room = limit
            part = rows[start:start + room]
            pieces[-1][name] = part
            start += len(part)
            room -= len(part)
    return pieces
