"""DatabaseLink: the recorder's supervised connection to PostgreSQL.

It connects (a :class:`~kalshi_store.writer.CopyWriter`; configuration errors raise
:class:`~kalshi_store.dberrors.DatabaseConfigError`), learns which database the URL reaches and refuses another one
appearing behind the same URL later (the spill belongs to the first), creates day partitions ahead (at connect and
every :data:`PARTITION_CHECK_INTERVAL`), bounds every call by a timeout and aborts a hung one at the socket, and
after a failure waits before trying again: the schedule is the project's one :class:`kalshi_ws.Backoff` (capped
exponential with full jitter), counted in :class:`_Backoff`.

Every error text it logs or keeps is redacted (:func:`kalshi_store.dberrors.describe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import psycopg

from kalshi_ws.backoff import Backoff

from .batch import Batch
from .dberrors import classify, describe
from .spill import SpillTarget, database_identity, same_database, url_target
from .writer import CopyWriter, WriteResult, is_connection_error

__all__ = ["PARTITION_CHECK_INTERVAL", "DatabaseLink"]

_T = TypeVar("_T")

log = logging.getLogger("kalshi_store.recorder")

#: Seconds between checks that day partitions exist ahead (also done at every connect).
PARTITION_CHECK_INTERVAL: Final = 3600.0


class _Backoff:
    """The retry schedule of :class:`kalshi_ws.Backoff` (capped exponential, full jitter: recorders that lost the
    same database come back spread out, not in waves) and the count of consecutive failures it needs."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.schedule = Backoff(initial=initial, cap=max(initial, maximum))
        self.failures = 0

    def failed(self) -> float:
        """The wait before the next attempt after this failure."""
        delay = self.schedule.delay(self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class DatabaseLink:
    """One database connection at a time, re-established with backoff (see the module docstring).

    ``days_ahead`` says how many day partitions to keep ahead (called at every check: it grows with the session's
    planned end). ``on_identity`` is called once, when the database is first reached; ``on_lost`` whenever the link
    becomes unavailable; ``where`` names the place rows go meanwhile (for the log line).
    """

    def __init__(self, url: str, *, connect_timeout: float, write_timeout: float, retry_initial: float,
                 retry_max: float, days_ahead: Callable[[], int],
                 on_identity: Callable[[SpillTarget], None] = lambda _: None,
                 on_lost: Callable[[], None] = lambda: None, where: Callable[[], str] = lambda: "?") -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self._backoff = _Backoff(retry_initial, retry_max)
        self._days_ahead = days_ahead
        self._on_identity = on_identity
        self._on_lost = on_lost
        self._where = where
        self.writer: CopyWriter | None = None
        self.available = False
        self.last_error: str | None = None
        #: The database this link writes to, once reached (the spill's segments say it from then on).
        self.identity: SpillTarget | None = None
        self._retry_at = 0.0
        self._partitions_checked = 0.0
        self._closing: set[asyncio.Future[None]] = set()

    # -- connecting ----------------------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the writer (raises the typed, redacted errors of :meth:`CopyWriter.connect`); False when the URL
        now reaches another database than the one this link writes to (rows then stay in the spill)."""
        try:
            writer = await asyncio.wait_for(CopyWriter.connect(self.url, connect_timeout=self.connect_timeout),
                                            self.connect_timeout + 2)
        except TimeoutError:
            raise TimeoutError(f"no connection within {self.connect_timeout + 2:.1f} s") from None
        self.writer = writer
        if not await self._check_identity(writer):
            return False
        log.info("recorder: connected to the database")
        await self.ensure_partitions()
        return True

    async def ready(self) -> bool:
        """Whether a connection is open now: reconnect when the backoff allows (False meanwhile, or on failure)."""
        if self.writer is not None and not self.writer.closed:
            if time.monotonic() - self._partitions_checked > PARTITION_CHECK_INTERVAL:
                # Sessions longer than the partitions made ahead: keep creating days (rows never fail without
                # them, they would land in the default partition).
                await self.ensure_partitions()
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            return await self.connect()
        except Exception as exc:  # unreachable, or reconfigured while recording: spill and retry
            self.set_unavailable(exc)
            return False

    async def _check_identity(self, writer: CopyWriter) -> bool:
        """Learn which database ``url`` reaches and refuse a database other than the one reached first."""
        try:
            identity = await self.bounded(writer, database_identity(writer.conn, self.url), self.write_timeout)
        except Exception as exc:
            self.set_unavailable(exc)
            return False
        if self.identity is None:
            self.identity = identity
            self._on_identity(identity)
        elif not same_database(self.identity, identity):
            self.set_unavailable(RuntimeError(
                f"{url_target(self.url).url} now reaches {identity.describe()}, not {self.identity.describe()} that "
                "this recorder has been writing to; its rows stay in the local spill"))
            return False
        return True

    def retry_now(self) -> None:
        """Let the next :meth:`ready` try to connect at once, whatever the backoff says (a last attempt)."""
        self._retry_at = 0.0

    def set_available(self) -> None:
        if not self.available:
            self.available = True
            self._backoff.reset()

    def set_unavailable(self, exc: BaseException) -> None:
        """The database failed: drop (abort) the connection and wait before the next attempt."""
        message = describe(exc, self.url)
        delay = self._backoff.failed()
        if self.available or self.last_error != message:
            if classify(exc) == "config":
                log.error("recorder: the database refuses this recorder (%s); spilling to %s, retrying in %.1f s",
                          message, self._where(), delay)
            else:
                log.warning("recorder: database unavailable (%s); spilling to %s, retrying in %.1f s", message,
                            self._where(), delay)
        self.last_error = message
        self.available = False
        self._retry_at = time.monotonic() + delay
        self._on_lost()
        writer, self.writer = self.writer, None
        if writer is not None:
            _abort(writer)
            closing = asyncio.ensure_future(_close_quietly(writer))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.close(), 2.0)
            self.writer = None

    # -- calls ----------------------------------------------------------------------------------------------

    async def bounded(self, writer: CopyWriter, work: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Await ``work`` on ``writer``'s connection; past ``timeout`` (a hung server) cut the connection at the
        socket and raise :class:`TimeoutError` (cancelling instead would make psycopg wait for the server to cancel)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            _abort(writer)  # the blocked call now fails with a connection error
            await asyncio.wait({task}, timeout=5.0)
            if not task.done():
                task.cancel()
            else:
                task.exception()  # retrieved: the connection error is expected
            raise TimeoutError(f"the database did not answer within {timeout:.1f} s")
        return task.result()

    async def ensure_partitions(self) -> None:
        """Create day partitions ahead; a failure is only logged (rows then land in the default partition)."""
        writer = self.writer
        if writer is None:
            return
        self._partitions_checked = time.monotonic()
        try:
            await self.bounded(writer, writer.ensure_partitions(self._days_ahead()), self.write_timeout)
        except Exception as exc:
            log.warning("recorder: could not create day partitions ahead (%s)", describe(exc, self.url))

    async def write(self, batch: Batch) -> WriteResult | None:
        """Write one batch; ``None`` (and the link marked unavailable) on a connection problem or timeout."""
        writer = self.writer
        if writer is None:
            return None
        try:
            return await self.bounded(writer, writer.write(batch), self.write_timeout + batch.row_count * 50e-6)
        except Exception as exc:
            # The writer isolates what the database rejects for good (dead_letter), so what arrives here is an
            # outage, a configuration change (privileges revoked) or a bug: keep the batch (spill) and retry.
            if not is_connection_error(exc):
                log.error("recorder: batch %s failed (%s); keeping it for retry", batch.batch_id,
                          describe(exc, self.url))
            self.set_unavailable(exc)
            return None


def _abort(writer: CopyWriter) -> None:
    """Cut the writer's connection at the socket, so a query blocked on a hung server fails at once."""
    try:
        fd = writer.conn.pgconn.socket
    except psycopg.Error:
        return
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


async def _close_quietly(writer: CopyWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.close(), 2.0)
