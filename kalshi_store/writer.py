"""CopyWriter: one batch, one transaction: COPY into temp staging tables, then INSERT ... ON CONFLICT DO NOTHING.

COPY is the fastest way into PostgreSQL but cannot skip duplicates; ``INSERT ... ON CONFLICT DO NOTHING`` skips
duplicates but is slow row by row. The writer combines them: each table's rows are COPYed into a temporary
staging table (created once per connection, emptied at every commit), then moved into the target by one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` that also converts epoch integers to timestamps and computes
partition days and content hashes. The inserted row count per table says how many rows were new.

If the database rejects a row (a value it cannot store), the batch is retried table by table, bisecting the
rejected table until the offending rows are isolated; those go to ``kalshi.dead_letter`` (reason
``unstorable``) and every other row is stored. Connection problems (refused, shut down, timed out) are raised
to the caller, which spills the batch and retries later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .batch import Batch, LedgerOp, SessionManifest, SessionProgress
from .rows import DEAD_LETTER, TABLE_ORDER, Row, TableSpec

__all__ = ["RowRejected", "CopyWriter", "WriteResult", "is_connection_error"]

log = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Errors that mean "this row cannot be stored", as opposed to "the database is not reachable".
RowRejected: Final = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
_json: Final = msgspec.json.Encoder(decimal_format="string")
_UNSTORABLE_NAMESPACE: Final = uuid.UUID("5d0c8f63-4a4e-4c55-9d43-6b2f1f0e7a11")


def ns_to_datetime(ns: int) -> datetime:
    """Nanoseconds since the epoch -> aware UTC datetime, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database is unreachable or went away (spill and retry, not a data problem)."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, psycopg.Error) and exc.sqlstate is not None and exc.sqlstate[:2] in {"08", "57", "53"}


@dataclass
class WriteResult:
    """Rows newly inserted and rows skipped as duplicates, per table; rows moved to dead_letter as unstorable."""

    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    unstorable: int = 0

    @property
    def total_inserted(self) -> int:
        return sum(self.inserted.values())


_SESSION_INSERT: Final = sql.SQL("""
    insert into kalshi.sessions (session_id, market_set, environment, markets, channels, use_yes_price,
        planned_start, planned_end, started_at, flow_run_id, host, updated_at)
    values (%(session_id)s, %(market_set)s, %(environment)s, %(markets)s, %(channels)s, %(use_yes_price)s,
        %(planned_start)s, %(planned_end)s, %(started_at)s, %(flow_run_id)s, %(host)s, %(started_at)s)
    on conflict (session_id) do nothing""")

_SESSION_COUNTS: Final = sql.SQL("""
    update kalshi.sessions s set
        written = (select coalesce(jsonb_object_agg(k, coalesce((s.written ->> k)::bigint, 0)
                                                      + coalesce((%(written)s::jsonb ->> k)::bigint, 0)), '{}')
                   from jsonb_object_keys(s.written || %(written)s::jsonb) k),
        duplicates = (select coalesce(jsonb_object_agg(k, coalesce((s.duplicates ->> k)::bigint, 0)
                                                         + coalesce((%(duplicates)s::jsonb ->> k)::bigint, 0)), '{}')
                      from jsonb_object_keys(s.duplicates || %(duplicates)s::jsonb) k)
    where s.session_id = %(session_id)s""")

_SESSION_PROGRESS: Final = sql.SQL("""
    update kalshi.sessions set
        received = %(received)s, rows_spilled = %(rows_spilled)s, reconnects = %(reconnects)s, gaps = %(gaps)s,
        max_message_age_ms = %(max_message_age_ms)s, paused_count = %(paused_count)s,
        paused_seconds = %(paused_seconds)s, status = coalesce(%(status)s, status),
        status_message = coalesce(%(status_message)s, status_message), ended_at = coalesce(%(ended_at)s, ended_at),
        updated_at = %(at)s
    where session_id = %(session_id)s and updated_at <= %(at)s""")

_LEDGER_OPEN: Final = sql.SQL("""
    insert into kalshi.gap_ledger (event_id, session_id, generation, incident_id, kind, sid, channel, markets,
        expected_seq, received_seq, started_at, ended_at, outcome, detail)
    values (%(event_id)s, %(session_id)s, %(generation)s, %(incident_id)s, %(kind)s, %(sid)s, %(channel)s,
        %(markets)s, %(expected_seq)s, %(received_seq)s, %(at)s, %(ended_at)s, %(outcome)s, %(detail)s)
    on conflict (event_id) do nothing""")

_LEDGER_CLOSE_INCIDENT: Final = sql.SQL("""
    update kalshi.gap_ledger set ended_at = %(at)s, outcome = %(outcome)s
    where session_id = %(session_id)s and incident_id = %(incident_id)s and ended_at is null""")

_LEDGER_CLOSE_EVENT: Final = sql.SQL("""
    update kalshi.gap_ledger set ended_at = %(at)s, outcome = %(outcome)s, detail = detail || %(detail)s
    where event_id = %(target_event_id)s and ended_at is null""")

_LEDGER_ANNOTATE: Final = sql.SQL("""
    update kalshi.gap_ledger set detail = detail || %(detail)s
    where session_id = %(session_id)s and incident_id = %(incident_id)s and ended_at is null""")


class CopyWriter:
    """Writes :class:`~kalshi_store.batch.Batch` es through one async connection (see the module docstring)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        # Staging tables created on this connection. Only the tables a session uses are created, because at every
        # commit PostgreSQL empties *all* of a connection's ON COMMIT DELETE ROWS tables (a few ms for 14).
        self._staged: set[str] = set()

    @classmethod
    async def connect(cls, url: str, *, connect_timeout: float = 5.0, application_name: str = "kalshi-recorder"
                      ) -> CopyWriter:
        conn = await psycopg.AsyncConnection.connect(
            url, connect_timeout=max(1, round(connect_timeout)), application_name=application_name
        )
        writer = cls(conn)
        await writer._prepare()
        return writer

    async def close(self) -> None:
        await self.conn.close()

    @property
    def closed(self) -> bool:
        return self.conn.closed or self.conn.broken

    async def _prepare(self) -> None:
        async with self.conn.transaction():
            # Timestamps are UTC in and out whatever the server's default.
            await self.conn.execute("set time zone 'UTC'")
            # A batch leaves memory/spill once its commit returns, so the commit must be durable even if the
            # server runs with synchronous_commit = off (an asynchronous commit is lost if the server crashes).
            await self.conn.execute("set synchronous_commit = on")

    async def ensure_partitions(self, days_ahead: int) -> int:
        async with self.conn.transaction():
            cur = await self.conn.execute("select kalshi.ensure_partitions(%s)", (days_ahead,))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- writing ------------------------------------------------------------------------------------------

    async def write(self, batch: Batch) -> WriteResult:
        """Write ``batch`` (idempotent). Raises on connection problems; isolates rows the database rejects."""
        try:
            async with self.conn.transaction():
                return await self._write_all(batch)
        except RowRejected as exc:
            self._staged.clear()  # staging tables created in the rolled-back transaction are gone
            log.warning("batch %s: a row was rejected (%s); isolating it", batch.batch_id, exc)
        except BaseException:
            self._staged.clear()
            raise
        return await self._write_isolating(batch)

    async def _write_all(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        if batch.session is not None:
            await self._upsert_session(batch.session)
        for spec in TABLE_ORDER:
            rows = batch.tables.get(spec.name)
            if rows:
                inserted = await self._copy_insert(spec, rows, _constants(batch, spec))
                result.inserted[spec.name] = inserted
                result.duplicates[spec.name] = len(rows) - inserted
        await self._apply_ledger(batch.ledger)
        await self._bookkeeping(batch, result)
        return result

    async def _write_isolating(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        rejected: list[Row] = []
        if batch.session is not None:
            async with self.conn.transaction():
                await self._upsert_session(batch.session)
        session_id = batch.session.session_id if batch.session else (
            batch.progress.session_id if batch.progress else None)
        for spec in TABLE_ORDER:
            rows = batch.tables.get(spec.name)
            if not rows:
                continue
            inserted, bad = await self._bisect(spec, rows, _constants(batch, spec))
            result.inserted[spec.name] = inserted
            result.duplicates[spec.name] = len(rows) - inserted - len(bad)
            for row, error in bad:
                log.error("%s row could not be stored (%s); moved to dead_letter", spec.name, error)
                rejected.append(_unstorable_row(spec, row, error, session_id))
        if rejected:
            async with self.conn.transaction():
                result.unstorable = await self._copy_insert(DEAD_LETTER, rejected)
            result.inserted["dead_letter"] = result.inserted.get("dead_letter", 0) + result.unstorable
        async with self.conn.transaction():
            await self._apply_ledger(batch.ledger)
            await self._bookkeeping(batch, result)
        return result

    async def _bisect(self, spec: TableSpec, rows: Sequence[Row], constants: dict[str, Any] | None
                      ) -> tuple[int, list[tuple[Row, str]]]:
        try:
            async with self.conn.transaction():
                return await self._copy_insert(spec, rows, constants), []
        except RowRejected as exc:
            self._staged.clear()
            if len(rows) == 1:
                return 0, [(rows[0], str(exc).strip())]
        half = len(rows) // 2
        left, bad_left = await self._bisect(spec, rows[:half], constants)
        right, bad_right = await self._bisect(spec, rows[half:], constants)
        return left + right, bad_left + bad_right

    async def _copy_insert(self, spec: TableSpec, rows: Sequence[Row], constants: dict[str, Any] | None = None
                           ) -> int:
        async with self.conn.cursor() as cur:
            if spec.name not in self._staged:
                await cur.execute(spec.create_staging)
                self._staged.add(spec.name)
            async with cur.copy(spec.copy) as copy:
                # Rows are formatted synchronously into the copy buffer; only a full buffer (~32 KiB) is awaited,
                # instead of one coroutine per row (``await copy.write_row(row)``). A text-format COPY passes
                # ``write``'s bytes through unchanged, and ``finish`` sends what is left in the buffer.
                format_row = copy.formatter.write_row
                for row in rows:
                    if data := format_row(row):
                        await copy.write(data)
            await cur.execute(spec.insert, constants)
            return max(cur.rowcount, 0)

    async def _upsert_session(self, manifest: SessionManifest) -> None:
        await self.conn.execute(_SESSION_INSERT, msgspec.structs.asdict(manifest))

    async def _bookkeeping(self, batch: Batch, result: WriteResult) -> None:
        session_id = batch.session.session_id if batch.session else (
            batch.progress.session_id if batch.progress else None)
        if session_id is not None and (result.inserted or result.duplicates):
            await self.conn.execute(_SESSION_COUNTS, {
                "session_id": session_id, "written": Jsonb(result.inserted), "duplicates": Jsonb(result.duplicates),
            })
        if batch.progress is not None:
            await self._progress(batch.progress)

    async def _progress(self, progress: SessionProgress) -> None:
        params = msgspec.structs.asdict(progress)
        params["received"] = Jsonb(progress.received)
        await self.conn.execute(_SESSION_PROGRESS, params)

    async def _apply_ledger(self, ops: Sequence[LedgerOp]) -> None:
        for op in ops:
            at = ns_to_datetime(op.at_ns)
            params = {
                "event_id": op.event_id, "session_id": op.session_id, "generation": op.generation,
                "incident_id": op.incident_id, "kind": op.kind, "sid": op.sid, "channel": op.channel,
                "markets": op.markets, "expected_seq": op.expected_seq, "received_seq": op.received_seq,
                "at": at, "ended_at": ns_to_datetime(op.ended_ns) if op.ended_ns is not None else None, "outcome": op.outcome,
                "detail": Jsonb(op.detail), "target_event_id": op.target_event_id,
            }
            if op.op == "open":
                await self.conn.execute(_LEDGER_OPEN, params)
            elif op.op == "close_incident":
                await self.conn.execute(_LEDGER_CLOSE_INCIDENT, params)
                params["ended_at"] = at
                await self.conn.execute(_LEDGER_OPEN, params)
            elif op.op == "close_event":
                await self.conn.execute(_LEDGER_CLOSE_EVENT, params)
            else:
                await self.conn.execute(_LEDGER_ANNOTATE, params)


def _constants(batch: Batch, spec: TableSpec) -> dict[str, Any] | None:
    """The batch-level parameters of ``spec.insert`` (``None`` for tables that take none)."""
    if not spec.constants:
        return None
    if batch.session_id is None or batch.session_date is None:
        raise ValueError(f"batch {batch.batch_id} has {spec.name} rows but no session_id/session_date")
    return {"session_id": batch.session_id, "session_date": batch.session_date}


def _unstorable_row(spec: TableSpec, row: Row, error: str, session_id: str | None) -> Row:
    names = [name for name, _, _ in spec.columns]
    values = dict(zip(names, row, strict=True))
    raw = _json.encode(values)
    received_ns = values.get("received_ns")
    # Derived from the row, so replaying the batch never stores the rejection twice.
    row_id = uuid.uuid5(_UNSTORABLE_NAMESPACE, spec.name + "\0" + raw.decode())
    return (
        str(row_id), session_id, values.get("generation"),
        received_ns if isinstance(received_ns, int) else 0, "unstorable", spec.name, values.get("sid"),
        values.get("seq"), error.replace("\x00", "\\0")[:2000], raw,
    )

