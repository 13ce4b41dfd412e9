"""Continuity of a market set's record across sessions: the claim a session makes on its set, its heartbeat, the
handover to the next session and the coverage record (``sql/040_continuity.sql``).

One market set is recorded by one session at a time, except for the few seconds of a handover:

1. :meth:`SessionLink.claim` (under a per-set advisory lock) closes sessions of the set whose process died (no
   heartbeat for :data:`DEAD_AFTER`), then looks at the live ones. A live session that already owns the set at
   least as long (the end of its slot, ``slot_end``, is not :data:`MIN_EXTENSION` earlier than this one's) makes this
   one a duplicate: it is not started (:class:`Claim.duplicate_of`). Otherwise this session's row is written and
   the live sessions become its predecessors. (A session past its planned end is closing: it is neither.)
2. The new session connects, subscribes and stores its order book snapshots; then :meth:`SessionLink.hand_over`
   marks the predecessors ``superseded``. Each predecessor sees it at its next heartbeat (about a second) and
   stops once the successor's coverage names every market it records (:meth:`SessionLink.not_recorded_by`: a
   market that opened during the handover is picked up by the successor a moment later): at no instant is a
   market of the set unrecorded, and the overlap lasts about a second.
3. :meth:`SessionLink.beat` runs every second: it writes the coverage changes (which market is recorded from
   when to when) and the heartbeat, and returns the session that took over, if any.

Everything here is best effort in the face of a database outage: the recorder spills the market data, while
the coverage changes wait in memory and are written with the next beat that reaches the database. A session
whose coverage never reaches the database counts, in the views, from its start to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

import psycopg

from .dberrors import redact

__all__ = ["DEAD_AFTER", "MIN_EXTENSION", "Claim", "CoverageChange", "LiveSession", "SessionLink"]

log = logging.getLogger(__name__)

#: A running session whose heartbeat is older than this is dead (its process was killed): the next session of its
#: set closes it as failed. Long enough to ride out a database restart, short enough to be noticed within a minute.
DEAD_AFTER: Final = timedelta(seconds=45)
#: A new session takes over from a live one only when it records the set at least this much longer; otherwise it
#: is a duplicate (two manual runs started together) and does not start.
MIN_EXTENSION: Final = timedelta(seconds=1)
#: A session's heartbeat (every second) must move within this long for it to count as alive when it would make a new
#: session a duplicate.
LIVENESS_SECONDS: Final = 3.0
#: Seconds a database call may take before it is given up (and retried at the next beat).
CALL_TIMEOUT: Final = 5.0

_T = TypeVar("_T")

EndReason = Literal["session_end", "handover", "removed", "inactive", "failed"]


@dataclass(frozen=True)
class LiveSession:
    """A session of the set that was recording when another one started."""

    session_id: str
    #: The end of the time it owns (its slot's end; an ad-hoc session's planned end).
    covers_until: datetime | None
    flow_run_id: str | None
    host: str | None

    def describe(self) -> str:
        until = f" until {self.covers_until:%Y-%m-%d %H:%M:%S} UTC" if self.covers_until else ""
        run = f" (flow run {self.flow_run_id})" if self.flow_run_id else ""
        return f"session {self.session_id}{run} on {self.host or 'an unknown host'}{until}"


@dataclass(frozen=True)
class Claim:
    #: A live session already records the set at least as long: do not start.
    duplicate_of: LiveSession | None = None
    #: Live sessions to take over from once this one's books are stored.
    predecessors: tuple[LiveSession, ...] = ()
    #: Sessions of the set found dead and closed as failed.
    closed_dead: int = 0
    #: False when the database could not be reached: the session records anyway (a duplicate beats a hole).
    reached: bool = True


@dataclass(frozen=True)
class CoverageChange:
    """A market started (``to`` is None) or stopped being recorded."""

    market: str
    at: datetime
    opened_at: datetime | None = None
    ended: EndReason | None = None


@dataclass
class SessionLink:
    """The session's own connection for its claim, heartbeat, handover and coverage (see the module docstring)."""

    url: str
    session_id: str
    market_set: str
    _pending: list[CoverageChange] = field(default_factory=list)
    _conn: psycopg.AsyncConnection | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def claim(self, *, environment: str, markets: Sequence[str], channels: Sequence[str], use_yes_price: bool,
                    planned_start: datetime | None, planned_end: datetime, slot_start: datetime | None,
                    slot_end: datetime, flow_run_id: str | None) -> Claim:
        """Claim the market set for this session (module docstring, step 1); writes the session row.

        Before it refuses to start as a duplicate, it checks that the other session is really alive: its heartbeat
        must move within :data:`LIVENESS_SECONDS` (a process killed a moment ago has a recent heartbeat that no
        longer moves; such a session is taken over instead, so a rerun right after a kill records)."""
        ignore: set[str] = set()
        try:
            while True:
                claim = await self._transaction(lambda conn: self._claim(
                    conn, environment, list(markets), list(channels), use_yes_price, planned_start, planned_end,
                    slot_start, slot_end, flow_run_id, ignore))
                other = claim.duplicate_of
                if other is None or await self._alive(other.session_id):
                    return claim
                log.warning("session %s of %r has stopped beating (its process died?): taking over from it",
                            other.session_id, self.market_set)
                ignore.add(other.session_id)
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not claim market set %r in the database (%s); recording without a claim",
                        self.market_set, type(exc).__name__)
            return Claim(reached=False)

    async def _alive(self, session_id: str) -> bool:
        """Whether ``session_id``'s heartbeat moves within :data:`LIVENESS_SECONDS`."""

        async def look(conn: psycopg.AsyncConnection) -> tuple[Any, ...] | None:
            return await (await conn.execute("select heartbeat_at, status from kalshi.sessions where session_id = %s",
                                             (session_id,))).fetchone()

        first = await self._transaction(look)
        deadline = asyncio.get_running_loop().time() + LIVENESS_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.25)
            now = await self._transaction(look)
            if first is None or now is None or now[1] != "running" or now[0] != first[0]:
                return bool(now and now[1] == "running")
        return False

    async def _claim(self, conn: psycopg.AsyncConnection, environment: str, markets: list[str], channels: list[str],
                     use_yes_price: bool, planned_start: datetime | None, planned_end: datetime,
                     slot_start: datetime | None, slot_end: datetime, flow_run_id: str | None,
                     ignore: set[str]) -> Claim:
        await conn.execute("select pg_advisory_xact_lock(hashtext('kalshi.market_set'), hashtext(%s))",
                           (self.market_set,))
        dead = await conn.execute(
            "update kalshi.sessions set status = 'failed', "
            "ended_at = coalesce(ended_at, greatest(heartbeat_at, updated_at)), updated_at = now(), "
            "status_message = 'abandoned: the process recording this session stopped without closing it (killed?) "
            "at its last heartbeat; rows received before that are stored' "
            "where market_set = %s and status = 'running' and session_id <> %s "
            "and (heartbeat_at < now() - %s or (heartbeat_at is null and planned_end < now() - interval '15 minutes')) "
            "returning session_id, ended_at", (self.market_set, self.session_id, DEAD_AFTER))
        closed = await dead.fetchall()
        for session_id, ended_at in closed:
            await conn.execute(
                "update kalshi.coverage set recording_to = %s, end_reason = 'failed' "
                "where session_id = %s and recording_to is null", (ended_at, session_id))
        if closed:
            log.warning("closed %d session(s) of %r whose process died: %s", len(closed), self.market_set,
                        ", ".join(str(s) for s, _ in closed))
        live = await conn.execute(
            "select session_id::text, coalesce(slot_end, planned_end), flow_run_id, host from kalshi.sessions "
            "where market_set = %s and status = 'running' and superseded_at is null and session_id <> %s "
            "and heartbeat_at >= now() - %s and planned_end > now() order by started_at",
            (self.market_set, self.session_id, DEAD_AFTER))
        running = [LiveSession(*row) for row in await live.fetchall()]
        for other in running:
            if other.session_id in ignore:
                continue
            if other.covers_until is None or other.covers_until >= slot_end - MIN_EXTENSION:
                return Claim(duplicate_of=other, closed_dead=len(closed))
        await conn.execute(
            "insert into kalshi.sessions (session_id, market_set, environment, markets, channels, use_yes_price, "
            "planned_start, planned_end, started_at, flow_run_id, host, updated_at, heartbeat_at, slot_start, slot_end) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s, now(), now(), %s, %s) "
            "on conflict (session_id) do update set heartbeat_at = now(), slot_start = excluded.slot_start, "
            "slot_end = excluded.slot_end",
            (self.session_id, self.market_set, environment, markets, channels, use_yes_price, planned_start,
             planned_end, flow_run_id, socket.gethostname(), slot_start, slot_end))
        return Claim(predecessors=tuple(running), closed_dead=len(closed))

    async def hand_over(self, predecessors: Sequence[LiveSession]) -> datetime | None:
        """Tell the predecessors this session has taken over (its books are stored); returns when."""
        if not predecessors:
            return None
        async def mark(conn: psycopg.AsyncConnection) -> tuple[Any, ...] | None:
            return await (await conn.execute(
                "update kalshi.sessions set superseded_by = %s, superseded_at = now() "
                "where session_id = any(%s) and superseded_at is null and status = 'running' returning superseded_at",
                (self.session_id, [p.session_id for p in predecessors]))).fetchone()

        try:
            row = await self._transaction(mark)
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not tell the previous session to stop (%s): it records until its deadline",
                        type(exc).__name__)
            return None
        return row[0] if row else None

    async def markets_covered_by(self, sessions: Sequence[LiveSession]) -> list[str]:
        """The markets ``sessions`` are recording now (open coverage) or recorded until they handed over, so a
        successor records them all (a market that opened while the successor was starting is not lost)."""
        if not sessions:
            return []
        async def read(conn: psycopg.AsyncConnection) -> list[str]:
            cur = await conn.execute("select distinct market_ticker from kalshi.coverage where session_id = any(%s) "
                                     "and (recording_to is null or end_reason = 'handover') order by 1",
                                     ([s.session_id for s in sessions],))
            return [row[0] for row in await cur.fetchall()]

        try:
            return await self._transaction(read)
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not read what the previous session records (%s)", type(exc).__name__)
            return []

    async def not_recorded_by(self, successor: str, markets: Sequence[str]) -> list[str]:
        """The ``markets`` that ``successor`` has no open coverage of (all of them if the database does not answer:
        the caller keeps recording, which costs only overlap)."""
        if not markets:
            return []

        async def read(conn: psycopg.AsyncConnection) -> list[str]:
            cur = await conn.execute("select m from unnest(%s::text[]) as m where not exists (select from "
                                     "kalshi.coverage c where c.session_id = %s and c.market_ticker = m "
                                     "and c.recording_to is null) order by 1", (list(markets), successor))
            return [row[0] for row in await cur.fetchall()]

        try:
            return await self._transaction(read)
        except (psycopg.Error, TimeoutError):
            return list(markets)

    async def last_trade_time(self, markets: Sequence[str]) -> datetime | None:
        """Time of the newest stored trade of any of ``markets``, where the session's REST backfill starts (``None``
        if none, or the database is away). No :data:`CALL_TIMEOUT`: a lock on ``kalshi.trades`` delays the session's
        start rather than lose its backfill (docs/fault-matrix.md, note 8)."""
        async def newest(conn: psycopg.AsyncConnection) -> tuple[Any, ...] | None:
            return await (await conn.execute("select max(exchange_ts) from kalshi.trades where market_ticker = any(%s)",
                                             (list(markets),))).fetchone()

        try:
            row = await self._transaction(newest, timeout=None)
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not read the last trade time (%s)", type(exc).__name__)
            return None
        return row[0] if row else None

    async def ended(self, sessions: Sequence[LiveSession]) -> bool:
        """Whether every one of ``sessions`` has ended (its final coverage is on record)."""
        async def running(conn: psycopg.AsyncConnection) -> tuple[Any, ...] | None:
            return await (await conn.execute("select count(*) from kalshi.sessions where session_id = any(%s) "
                                             "and status = 'running'", ([s.session_id for s in sessions],))).fetchone()

        try:
            row = await self._transaction(running)
        except (psycopg.Error, TimeoutError):
            return False
        return row is not None and row[0] == 0

    def note(self, change: CoverageChange) -> None:
        """Queue a coverage change; it is written with the next beat."""
        self._pending.append(change)

    async def beat(self) -> tuple[str, datetime] | None:
        """Write the queued coverage changes and the heartbeat; return (successor, when) once superseded."""
        changes = list(self._pending)
        try:
            result = await self._transaction(lambda conn: self._beat(conn, changes))
        except (psycopg.OperationalError, TimeoutError) as exc:
            log.debug("heartbeat of session %s failed (%s); retrying", self.session_id, type(exc).__name__)
            return None
        except psycopg.Error as exc:  # not an outage (privileges, a poison value): drop the changes, keep beating
            log.warning("session %s: coverage changes could not be stored (%s: %s)", self.session_id,
                        type(exc).__name__, redact(str(exc)))
            del self._pending[:len(changes)]
            return None
        del self._pending[:len(changes)]
        return result

    async def _beat(self, conn: psycopg.AsyncConnection, changes: list[CoverageChange]) -> tuple[str, datetime] | None:
        for change in changes:
            if change.ended is None:
                await conn.execute(
                    "insert into kalshi.coverage (session_id, market_set, market_ticker, recording_from, opened_at) "
                    "values (%s, %s, %s, %s, %s) on conflict do nothing",
                    (self.session_id, self.market_set, change.market, change.at, change.opened_at))
            else:
                await conn.execute(
                    "update kalshi.coverage set recording_to = greatest(recording_from, %s), end_reason = %s "
                    "where session_id = %s and market_ticker = %s and recording_to is null",
                    (change.at, change.ended, self.session_id, change.market))
        cur = await conn.execute(
            "update kalshi.sessions set heartbeat_at = now() where session_id = %s "
            "returning superseded_by::text, superseded_at", (self.session_id,))
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    async def finish(self, markets: Sequence[str]) -> None:
        """The session ended: write the last coverage changes and every market it recorded (best effort)."""
        await self.beat()
        with contextlib.suppress(psycopg.Error, TimeoutError):
            await self._transaction(lambda conn: conn.execute(
                "update kalshi.sessions set markets = %s where session_id = %s", (list(markets), self.session_id)))

    async def close(self) -> None:
        await self._drop()

    async def _transaction(self, work: Callable[[psycopg.AsyncConnection], Awaitable[_T]],
                           timeout: float | None = CALL_TIMEOUT) -> _T:
        """Run ``work`` in one transaction on the link's connection, within ``timeout`` seconds (``None``: no limit);
        a failure drops the connection (the next call opens a new one) and propagates."""
        try:
            async with self._lock:
                conn = await self._connect()
                async with conn.transaction():
                    return await asyncio.wait_for(work(conn), timeout)
        except (psycopg.Error, TimeoutError):
            await self._drop()
            raise

    async def _connect(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self.url, connect_timeout=3, application_name="kalshi-session-link"),
                CALL_TIMEOUT)
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)
