"""Recorder: the MessageSink the WebSocket client writes into (docs/ARCHITECTURE.md, "The client -> storage
contract"), and the session glue around it.

Hot path: :meth:`Recorder.on_message` looks the message's type up in a dict, builds a plain tuple and appends
it to that table's list; nothing else. A background task takes the lists as one :class:`~kalshi_store.batch.Batch`
every ``flush_interval`` seconds, or as soon as ``batch_rows`` rows are waiting, and hands it to the
:class:`~kalshi_store.outbox.Outbox`, which writes it through the :class:`~kalshi_store.dblink.DatabaseLink` (a
:class:`~kalshi_store.writer.CopyWriter`, one transaction per batch) or else appends it to the durable
:class:`~kalshi_store.spill.SpillBuffer`.

The parts (one job each):

* :mod:`kalshi_store.ledger` turns session events into gap-ledger operations (incidents opened, closed by
  ``Recovered``, annotated by the reconnect); pure.
* :mod:`kalshi_store.health` (:class:`~kalshi_store.health.SessionHealth`) owns the session's counters, open
  incidents and final verdict: ``completed`` becomes ``degraded`` when the record is damaged, with every problem
  listed once. :meth:`Recorder.close_session` writes that verdict; the product layer reads :attr:`Recorder.health`.
* :mod:`kalshi_store.dblink` connects, pins the database the URL reaches, retries with capped exponential backoff,
  aborts a hung call at the socket and creates day partitions ahead.
* :mod:`kalshi_store.outbox` keeps batches until they are durable and runs the one replay loop (this recorder's
  spill, then folders left by ended recorders, the same loop ``kalshi-ingest db replay`` uses).

A configuration error (wrong password, missing database or schema, a role without privileges, a malformed URL)
is not an outage: :meth:`Recorder.start` raises :class:`~kalshi_store.dberrors.DatabaseConfigError` before
anything is recorded (one line naming ``DATABASE_URL``, without the password). A value the database cannot store
is not an outage either: the writer moves it to ``dead_letter`` and stores the rest. Every error text the
recorder logs or stores is redacted (:func:`kalshi_store.dberrors.redact`).

When the database fails (connection refused, shut down, or a write that does not finish within its timeout) the
batch is spilled and recording continues; when the database is back the spill is replayed in order before
anything new is written. Nothing is lost and nothing is duplicated (batches are idempotent). Memory is bounded:
when ``max_rows_in_memory`` rows are waiting (the database hangs, or the spill is at its size limit or failing),
or at once when the disk under the spill is full (ENOSPC/EDQUOT) while the database is away, the recorder sets
:attr:`Recorder.paused`; the client then stops reading the socket until :meth:`Recorder.wait_resumed` returns.
Every pause is logged and recorded in the gap ledger (kind ``backpressure``, ``detail.cause`` ``memory_full`` or
``spill_full``).

Spill segments name the database they belong to: the first one the recorder reaches is pinned (another database
appearing behind the same URL later is refused; rows keep spilling), and folders left by other processes are
replayed only when they belong to it (:func:`~kalshi_store.spill.target_mismatch`).

Undecodable, legacy and unknown frames go to ``dead_letter``. The session manifest (``kalshi.sessions``) is
written with every batch, so a session opened while the database was down appears as soon as it returns.

Usage::

    async with Recorder(url, spill_dir=data_dir / "spill") as recorder:
        session_id = await recorder.open_session("weather", "demo", markets, channels, start, end)
        ...  # the client calls recorder.on_message / on_event
        await recorder.close_session("completed")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from kalshi_ws import events as ev
from kalshi_ws import messages as m

from . import ledger
from .batch import Batch, LedgerOp, SessionManifest, SessionProgress, split_tables
from .dberrors import DatabaseConfigError, describe, redact, url_secrets
from .dblink import DatabaseLink
from .health import SessionHealth, SessionStatus, Verdict
from .outbox import Outbox
from .rows import (
    TABLES,
    MissingSeqError,
    Row,
    RowBuilders,
    dead_letter_row,
    fill_row,
    trade_row,
)
from .spill import SpillBuffer, SpillDiskFull, SpillTarget, url_target
from .writer import WriteResult

__all__ = ["Recorder", "RecorderStats", "SessionHealth", "SessionStatus", "Verdict"]

log = logging.getLogger(__name__)


#: At stop, with batches still spilled, a last attempt at the database may take this long beyond its connect.
STOP_RETRY_SECONDS: Final = 5.0
#: ``_track_age`` looks at every this-many-th row of a batch.
_AGE_STRIDE: Final = 16
#: Where the exchange time (ms), the receive time (ns) and the connection generation sit in a row, for the
#: message-age statistic (of live messages only: a REST backfill row has no generation).
_AGE_COLUMNS: Final = {name: tuple(TABLES[name].index(column) for column in ("ts_ms", "received_ns", "generation"))
                       for name in ("trades", "orderbook_deltas", "tickers")}


@dataclass
class RecorderStats:
    """A snapshot for progress displays (:meth:`Recorder.stats`)."""

    session_id: str | None
    received: dict[str, int]
    written: dict[str, int]
    duplicates: dict[str, int]
    pending_rows: int
    rows_spilled: int
    spill_bytes: int
    database_available: bool
    lag_seconds: float
    paused: bool
    paused_count: int
    max_message_age_ms: int | None
    batches_written: int
    unstorable_rows: int
    last_error: str | None = None
    #: The disk under the spill is full right now (reading is paused until space returns or the database is back).
    spill_full: bool = False
    #: Times this session found the disk under the spill full.
    spill_full_count: int = 0


class Recorder:
    """Records one session at a time into PostgreSQL at ``url`` (see the module docstring).

    Parameters (their consequences):

    ``spill_dir``
        Folder for spill files; each recorder works in its own sub-folder, and folders left by a dead process
        are replayed when the database is reachable.
    ``batch_rows``
        Flush as soon as this many rows wait (bigger batches are cheaper per row, smaller ones commit sooner).
    ``flush_interval``
        Flush at least this often (s): the most a row waits in memory while the database is healthy.
    ``max_rows_in_memory``
        Rows held in memory before reading stops (``paused``): reached only when the database hangs or the
        spill cannot take more. About 650 bytes per row in memory (100 000 rows: ~65 MB).
    ``spill_max_bytes``
        Size limit of the spill folder.
    ``write_timeout``
        Seconds a batch write may take (plus 50 us per row) before the database is considered hung: the
        connection is aborted and the batch spilled.
    ``connect_timeout``, ``retry_initial``, ``retry_max``
        Reconnection: each failed attempt doubles the bound of a random wait (full jitter, :class:`kalshi_ws.Backoff`)
        from ``retry_initial`` up to ``retry_max`` seconds.
    ``partition_days_ahead``
        Day partitions created ahead at connect time (at least until the session's planned end).
    """

    def __init__(
        self,
        url: str,
        *,
        spill_dir: Path | str,
        batch_rows: int = 5000,
        flush_interval: float = 0.1,
        max_rows_in_memory: int = 100_000,
        spill_max_bytes: int = 8 * 1024**3,
        write_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        partition_days_ahead: int = 2,
    ) -> None:
        self.url = url
        self._secrets = url_secrets(url)
        self.spill_root = Path(spill_dir)
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.max_rows_in_memory = max_rows_in_memory
        self.spill_max_bytes = spill_max_bytes
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.partition_days_ahead = partition_days_ahead

        # Hot-path state: one list per table, and the type -> (list, builder) dispatch of the open session.
        self._lists: dict[str, list[Row]] = {name: [] for name in TABLES}
        self._dispatch: dict[type, tuple[list[Row], Any]] = {}
        self._pending = 0
        self._oldest_ns = 0
        self._ledger: list[LedgerOp] = []

        self._session: SessionManifest | None = None
        self._session_day_span = 0
        self._builders: RowBuilders | None = None
        self._generation = 0
        self._received: dict[str, int] = {}
        self._written: dict[str, int] = {}
        self._duplicates: dict[str, int] = {}
        self._max_age_ms: int | None = None
        self._health = SessionHealth()

        self._paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._pause_started_ns = 0
        self._pause_event_id: str | None = None

        self._outbox = Outbox(self.spill_root)
        self._batch_counter = 0
        self._link = DatabaseLink(url, connect_timeout=connect_timeout, write_timeout=write_timeout,
                                  retry_initial=retry_initial, retry_max=retry_max, days_ahead=self._days_ahead,
                                  on_identity=self._pin, on_lost=self._lost, where=self._spill_folder)
        self._batches_written = 0
        self._wake = asyncio.Event()
        self._flushed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._io_lock = asyncio.Lock()

    # ===================================================================================== life cycle

    async def __aenter__(self) -> Recorder:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        if self._session is not None:
            if exc is None:
                await self.close_session("completed")
            elif isinstance(exc, asyncio.CancelledError):
                await self.close_session("cancelled", "the recording task was cancelled")
            else:
                await self.close_session("failed", describe(exc, self.url))
        await self.stop()

    async def start(self) -> None:
        """Connect, create this recorder's spill folder and start the flush loop.

        Raises :class:`~kalshi_store.dberrors.DatabaseConfigError` when the database answers that ``url`` is
        wrong (authentication, missing database/schema, privileges, malformed); an unreachable database is not an
        error here (the recorder spills until it is back).
        """
        if self._task is not None:
            return
        folder = self.spill_root / f"recorder-{uuid.uuid4().hex[:12]}"
        self._outbox.open(SpillBuffer(folder, target=url_target(self.url), max_bytes=self.spill_max_bytes))
        try:
            await self._link.connect()
        except DatabaseConfigError:
            self._outbox.close()
            raise
        except Exception as exc:  # unreachable: spill until it is back
            self._link.set_unavailable(exc)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="kalshi-recorder-flush")

    async def stop(self) -> None:
        """Flush everything (to the database, or to the spill when it is away) and release resources."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._outbox.is_open and self._outbox.left_unstored and not self._link.available:
            # The database may be back while the backoff still waits: one last attempt now (writes stay bounded by
            # write_timeout), so a session that ends just after an outage does not leave its rows for a later replay.
            # Bounded (STOP_RETRY_SECONDS after the connect): what is not replayed by then stays in the spill.
            self._link.retry_now()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._cycle(), self.connect_timeout + STOP_RETRY_SECONDS)
        await self._link.close()
        self._outbox.close()

    # ===================================================================================== session

    async def open_session(
        self,
        market_set: str,
        environment: str,
        markets: Sequence[str],
        channels: Sequence[str],
        planned_start: datetime | None = None,
        planned_end: datetime | None = None,
        flow_run_id: str | None = None,
        *,
        use_yes_price: bool = False,
        session_id: str | None = None,
    ) -> str:
        """Start a session and return its id (a UUID made here unless given, so it works while the database is down).

        ``use_yes_price`` must say what the client's order book subscription pinned (it decides how NO-side
        book prices read). The session row is written right away when the database is reachable, else with the
        first batch that reaches it.
        """
        if self._task is None:
            raise RuntimeError("Recorder is not started: use `async with Recorder(...)` or await start()")
        if self._session is not None:
            raise RuntimeError(f"session {self._session.session_id} is still open; close_session() it first")
        unstorable = [ticker for ticker in markets if not _storable_text(ticker)]
        if unstorable:
            log.warning("recorder: dropping market tickers with NUL or control characters from the session row: %s",
                        ", ".join(repr(t) for t in unstorable))
            markets = [ticker for ticker in markets if _storable_text(ticker)]
        session_id = session_id or str(uuid.uuid4())
        started = datetime.now(UTC)
        self._session = SessionManifest(
            session_id=session_id, market_set=market_set, environment=environment, markets=list(markets),
            channels=list(channels), use_yes_price=use_yes_price, planned_start=planned_start,
            planned_end=planned_end, started_at=started, flow_run_id=flow_run_id, host=socket.gethostname(),
        )
        if planned_end is not None:
            self._session_day_span = max(0, math.ceil((planned_end - started).total_seconds() / 86400))
        self._builders = RowBuilders(session_id, started.date(), use_yes_price=use_yes_price)
        self._dispatch = {cls: (self._lists[table], builder) for cls, (table, builder)
                          in self._builders.dispatch.items()}
        self._received, self._written, self._duplicates = {}, {}, {}
        self._health = SessionHealth()
        self._max_age_ms = None
        self._generation = 0
        if self._link.writer is not None:
            async with self._io_lock:
                await self._link.ensure_partitions()
        self._take_batch(force=True)  # the session row, now (or as soon as the database is back)
        await self.flush()
        log.info("recording session %s (%s, %s): %d markets, channels %s", session_id, market_set, environment,
                 len(markets), ", ".join(channels))
        return session_id

    async def close_session(self, status: SessionStatus = "completed", message: str | None = None) -> Verdict | None:
        """End the session: write everything (or spill it) and the final status; return the :class:`Verdict`
        written (``None`` when no session is open).

        The status and the problems come from the session's :class:`~kalshi_store.health.SessionHealth`
        (``completed`` becomes ``degraded`` when the record is damaged: see :meth:`SessionHealth.verdict`);
        ``message`` is the caller's note, appended after the problems. When the database is away, the final status
        reaches ``kalshi.sessions`` with the spilled batches (at the next recorder start, or
        ``kalshi-ingest db replay``).
        """
        if self._session is None:
            return None
        self.verdict(status)  # an unknown status is an error before anything is written
        if self._paused:
            self._resume()
        await self.flush()
        notes = (redact(message, *self._secrets),) if message else ()
        verdict = self.verdict(status, notes)
        self._take_batch(final=(verdict.status, verdict.message))
        await self.flush()
        if self._outbox.stuck:
            log.error("session %s: %d rows could not be stored or spilled", self._session.session_id,
                      self._outbox.rows + self._pending)
        log.info("session %s closed: %s%s", self._session.session_id, verdict.status,
                 f" ({verdict.message})" if verdict.message else "")
        self._session = None
        self._builders = None
        self._dispatch = {}
        return verdict

    def verdict(self, status: SessionStatus = "completed", notes: tuple[str, ...] = ()) -> Verdict:
        """What :meth:`close_session` would write now if asked for ``status`` (see :meth:`SessionHealth.verdict`)."""
        return self._health.verdict(
            status, received=self._received, rows_spilled=self._rows_spilled(), spill_dir=str(self.spill_root),
            left_unstored=self._outbox.left_unstored, notes=notes)

    @property
    def health(self) -> SessionHealth:
        """The counters, open incidents and problems of the open session (or of the last one closed)."""
        return self._health

    # ===================================================================================== MessageSink

    def on_message(self, message: m.AnyMessage, generation: int, received_ns: int) -> None:
        """Append the message's row to its table's list (the client's hot path: no I/O, no allocation but the row)."""
        entry = self._dispatch.get(type(message))
        if entry is None:
            self._dead_letter(message, generation, received_ns)
            return
        try:
            entry[0].append(entry[1](message, generation, received_ns))
        except Exception as exc:  # a row that cannot even be built must not kill the client
            reason = "missing_seq" if isinstance(exc, MissingSeqError) else "unstorable"
            self._dead_letter(message, generation, received_ns, reason=reason, error=str(exc))
            return
        if not self._pending:
            self._oldest_ns = received_ns
        pending = self._pending = self._pending + 1
        if pending >= self.batch_rows:
            if pending == self.batch_rows:  # once per batch; the flush loop is awake until it takes the rows
                self._wake.set()
            if pending + self._outbox.rows >= self.max_rows_in_memory:
                self._pause("memory_full")

    def _dead_letter(self, message: Any, generation: int, received_ns: int, *, reason: str | None = None,
                     error: str | None = None) -> None:
        session = self._require_session()
        self._lists["dead_letter"].append(
            dead_letter_row(message, generation, received_ns, session.session_id, reason=reason, error=error))
        if not self._pending:
            self._oldest_ns = received_ns
        # The same bound as data rows: a flood of garbage wakes the flush loop and pauses reading like data does.
        pending = self._pending = self._pending + 1
        if pending >= self.batch_rows:
            if pending == self.batch_rows:
                self._wake.set()
            if pending + self._outbox.rows >= self.max_rows_in_memory:
                self._pause("memory_full")

    def on_event(self, event: ev.SessionEvent) -> None:
        """Record a session event in the gap ledger (incidents open and close) and the session counters."""
        session = self._require_session().session_id
        if isinstance(event, ev.Connected):
            self._generation = max(self._generation, event.generation)
        self._health.on_event(event)
        try:
            op = ledger.event_op(event, session)
        except TypeError:  # pragma: no cover - a new event type: keep it visible rather than fail the client
            log.warning("recorder: unhandled session event %r", event)
            return
        if op is not None:
            self._ledger.append(op)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def rows_in_memory(self) -> int:
        """Rows received and not yet durable (what ``stats().pending_rows`` reports, without building the stats)."""
        return self._pending + self._outbox.rows

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    # ===================================================================================== REST, queries, stats

    def add_rest_trades(self, trades: Iterable[m.TradePayload]) -> int:
        """Queue trades fetched from REST (``source = 'rest'``; a trade already recorded is skipped by trade_id)."""
        session = self._require_session()
        now = time.time_ns()
        rows = [trade_row(trade, now, "rest", session.session_id, None, None, None) for trade in trades]
        if rows:
            self._lists["trades"].extend(rows)
            if not self._pending:
                self._oldest_ns = now
            self._pending += len(rows)
            self._wake.set()
        return len(rows)

    def add_rest_fills(self, fills: Iterable[m.FillPayload]) -> int:
        """Queue the account's fills fetched from REST (``source = 'rest'``; a fill already recorded, live or
        from REST, is skipped by its key ``(trade_id, order_id)``)."""
        session = self._require_session()
        now = time.time_ns()
        rows = [fill_row(fill, now, session.session_id, None, None) for fill in fills]
        if rows:
            self._lists["rest_fills"].extend(rows)
            if not self._pending:
                self._oldest_ns = now
            self._pending += len(rows)
            self._wake.set()
        return len(rows)

    def stats(self) -> RecorderStats:
        received = dict(self._received)
        for name, rows in self._lists.items():
            if rows:
                received[name] = received.get(name, 0) + len(rows)
        lag = (time.time_ns() - self._oldest_ns) / 1e9 if self._pending or self._outbox.rows else 0.0
        spill = self._outbox.spill if self._outbox.is_open else None
        return RecorderStats(
            session_id=self._session.session_id if self._session else None,
            received=received, written=dict(self._written), duplicates=dict(self._duplicates),
            pending_rows=self.rows_in_memory,
            rows_spilled=spill.rows_appended if spill else 0, spill_bytes=spill.pending_bytes if spill else 0,
            database_available=self._link.available, lag_seconds=max(lag, 0.0), paused=self._paused,
            paused_count=self._health.paused_count, max_message_age_ms=self._max_age_ms,
            batches_written=self._batches_written, unstorable_rows=self._health.unstorable,
            last_error=self._last_error(), spill_full=self._outbox.spill_full is not None,
            spill_full_count=self._health.spill_full_count,
        )

    # ===================================================================================== flushing

    async def flush(self) -> None:
        """Write (or spill) everything received so far; returns when it is durable.

        Returns early only if neither the database nor the spill can take the rows (they stay in memory).
        """
        if self._pending or self._ledger:
            self._take_batch()
        target = self._batch_counter
        self._wake.set()
        async with self._flushed:
            await self._flushed.wait_for(
                lambda: self._task is None or self._task.done() or self._outbox.durable_through >= target
                or self._outbox.stuck)

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            timeout = max(0.0, self.flush_interval - (time.monotonic() - last))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            last = time.monotonic()
            try:
                await self._cycle()
            except Exception:  # never let the loop die: the data would stop being stored
                log.exception("recorder: unexpected error in the flush loop")
                self._link.last_error = "unexpected error in the flush loop (see log)"
                await asyncio.sleep(self.retry_initial)
            async with self._flushed:
                self._flushed.notify_all()
            if self._stopping and not self._pending and not self._ledger and not self._outbox:
                break
            if self._stopping and not self._link.available and self._outbox.stuck:
                log.error("recorder: stopping with %d rows that neither the database nor the spill could take",
                          self._outbox.rows + self._pending)
                break

    async def _cycle(self) -> None:
        self._take_batch()
        async with self._io_lock:
            if await self._link.ready():
                if await self._replay() and await self._outbox.write(self._write):
                    self._link.set_available()
            if self._outbox:
                await self._to_spill()
        if (self._paused and self._outbox.spill_full is None
                and self._pending + self._outbox.rows < self.max_rows_in_memory // 2):
            self._resume()

    def _take_batch(self, final: tuple[str, str | None] | None = None, *, force: bool = False) -> None:
        """Move the rows and ledger ops waiting in memory into a batch in the outbox."""
        if not self._pending and not self._ledger and final is None and not force:
            return
        session = self._session
        tables: dict[str, list[Row]] = {}
        for name, rows in self._lists.items():
            if rows:
                taken = rows[:]
                rows.clear()
                tables[name] = taken
                self._received[name] = self._received.get(name, 0) + len(taken)
                cols = _AGE_COLUMNS.get(name)
                if cols is not None:
                    self._track_age(taken, *cols)
        ledger, self._ledger = self._ledger, []
        self._pending = 0
        progress = None
        if session is not None:
            status, message = final if final is not None else (None, None)
            progress = SessionProgress(
                session_id=session.session_id, at=datetime.now(UTC), received=dict(self._received),
                rows_spilled=self._rows_spilled(),
                reconnects=self._health.reconnects, gaps=self._health.gaps, max_message_age_ms=self._max_age_ms,
                paused_count=self._health.paused_count, paused_seconds=self._health.paused_seconds, status=status,
                status_message=message, ended_at=datetime.now(UTC) if final is not None else None,
            )
        builders = self._builders
        pieces = split_tables(tables, max(1, self.batch_rows))
        for i, piece in enumerate(pieces, 1):  # the ledger ops and the progress ride with the last piece
            last = i == len(pieces)
            self._batch_counter += 1
            self._outbox.put(Batch(
                batch_id=self._batch_counter, session=session,
                session_id=builders.session_id if builders is not None else None,
                session_date=builders.session_date if builders is not None else None,
                tables=piece, ledger=ledger if last else [], progress=progress if last else None))

    def _track_age(self, rows: list[Row], ms_index: int, ns_index: int, generation_index: int) -> None:
        """Update the largest message age (receive time - exchange time) from a sample of the rows: every
        ``_AGE_STRIDE``-th row plus the last one. Ages move slowly (network and exchange delays), so a sample
        finds the worst stretch at a fraction of the cost of looking at every row on the hot path. Rows fetched
        from REST (no generation) are old by design and say nothing about the live stream's delay."""
        oldest = self._max_age_ms
        for r in (*rows[::_AGE_STRIDE], rows[-1]):
            ms = r[ms_index]
            if ms is not None and r[generation_index] is not None:
                age = r[ns_index] // 1_000_000 - ms
                if oldest is None or age > oldest:
                    oldest = age
        self._max_age_ms = oldest

    # -- the database link ----------------------------------------------------------------------------

    def _days_ahead(self) -> int:
        return max(self.partition_days_ahead, self._session_day_span + 1)

    def _pin(self, identity: SpillTarget) -> None:
        """The database is reached for the first time: spill segments say which one it is from now on."""
        if self._outbox.is_open:
            self._outbox.spill.set_target(identity)

    def _lost(self) -> None:
        self._outbox.look_for_orphans()  # as soon as the database is back

    def _spill_folder(self) -> str:
        return str(self._outbox.spill.directory) if self._outbox.is_open else "?"

    def _rows_spilled(self) -> int:
        return self._outbox.spill.rows_appended if self._outbox.is_open else 0

    def _last_error(self) -> str | None:
        """The spill's failure while it refuses batches, else the database's last one."""
        failure = self._outbox.spill_failure
        return failure if self._outbox.stuck and failure else self._link.last_error

    async def _write(self, batch: Batch) -> bool:
        """Write one batch; False (and the database marked unavailable) on a connection problem or timeout."""
        result = await self._link.write(batch)
        if result is None:
            return False
        self._account(result, batch)
        return True

    def _account(self, result: WriteResult, batch: Batch) -> None:
        for name, n in result.inserted.items():
            self._written[name] = self._written.get(name, 0) + n
        for name, n in result.duplicates.items():
            self._duplicates[name] = self._duplicates.get(name, 0) + n
        if self._session is not None and batch.session_id == self._session.session_id:
            # Rows of an earlier session (a replayed spill) that went to dead_letter do not damage this one.
            self._health.unstorable += result.unstorable
        self._batches_written += 1

    async def _to_spill(self) -> None:
        """Spill what waits in the outbox; when the spill refuses, count it and pause reading if need be."""
        fills = self._outbox.disk_fills
        failure = await self._outbox.to_spill(held=self._pending)
        if isinstance(failure, SpillDiskFull):
            # The disk is full: nothing more can be made durable, so reading stops now (the same backpressure as a
            # full memory) until the disk takes batches again or the database is back.
            if self._outbox.disk_fills > fills:  # a new fill, even if the spill took batches in between
                self._health.on_spill_full(str(failure))
            self._health.spill_full_error = str(failure)
            self._pause("spill_full")
        elif failure is not None and self._outbox.rows + self._pending >= self.max_rows_in_memory:
            self._pause("memory_full")

    async def _replay_write(self, batch: Batch) -> WriteResult | None:
        # The recorder counts what it wrote itself (``_account``); the replay only needs success or failure.
        return WriteResult() if await self._write(batch) else None

    async def _replay(self) -> bool:
        """Write every spilled batch (ours, then folders left by ended processes) in order; True when all are stored."""
        identity = self._link.identity
        assert identity is not None

        async def keep_memory_bounded() -> None:
            if self._pending >= self.batch_rows:
                # Keep memory bounded while catching up: new rows queue behind the spill, in a new segment.
                self._take_batch()
                self._outbox.spill.seal()
                await self._to_spill()

        done, quarantined = await self._outbox.replay(identity, self._replay_write, stopping=self._stopping,
                                                      after_batch=keep_memory_bounded)
        self._health.on_quarantined(quarantined)
        return done

    # -- backpressure ---------------------------------------------------------------------------------

    def _pause(self, cause: Literal["memory_full", "spill_full"]) -> None:
        if self._paused:
            return
        self._paused = True
        self._resumed.clear()
        self._health.on_pause()
        self._pause_started_ns = time.time_ns()
        rows = self._pending + self._outbox.rows
        if cause == "spill_full":
            log.warning("recorder: the spill's disk is full and the database is away (%d rows in memory); the "
                        "session stops reading the socket until the spill or the database takes rows again", rows)
        else:
            log.warning("recorder: %d rows in memory and the database/spill cannot take more; the session stops "
                        "reading the socket until they are stored", rows)
        if self._session is not None:
            self._pause_event_id = str(uuid.uuid4())
            self._ledger.append(ledger.pause_op(
                self._session.session_id, self._pause_started_ns, event_id=self._pause_event_id,
                generation=self._generation, cause=cause, rows_in_memory=rows, last_error=self._last_error()))

    def _resume(self) -> None:
        if not self._paused:
            return
        now = time.time_ns()
        self._paused = False
        self._health.on_resume((now - self._pause_started_ns) / 1e9)
        self._resumed.set()
        log.info("recorder: reading resumed after %.1f s", (now - self._pause_started_ns) / 1e9)
        if self._session is not None and self._pause_event_id is not None:
            self._ledger.append(ledger.resume_op(self._session.session_id, now, pause_event_id=self._pause_event_id))
        self._pause_event_id = None

    def _require_session(self) -> SessionManifest:
        if self._session is None:
            raise RuntimeError("no open session: call `await recorder.open_session(...)` before delivering data")
        return self._session


def _storable_text(text: str) -> bool:
    """False for text with NUL or other control characters (a market ticker never has them; PostgreSQL cannot
    store NUL at all)."""
    return text.isprintable()
