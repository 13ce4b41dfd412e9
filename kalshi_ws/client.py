"""KalshiWebSocketClient: the thin asyncio driver around :class:`~kalshi_ws.protocol.SessionProtocol`.

The protocol object decides everything about the Kalshi session (what to subscribe, sequence checks,
books, recovery). This module only owns the socket:

* **Connect** with freshly signed ``KALSHI-ACCESS-*`` headers on every attempt (headers are never reused,
  so a long retry loop cannot drift outside the exchange's timestamp window).
* **Handshake failures**: any answer other than ``101`` is a failed attempt. ``401``/``403`` emit
  :class:`~kalshi_ws.events.AuthRejected`; after ``ClientOptions.max_auth_rejections`` consecutive
  rejections the client stops with :class:`AuthenticationError` instead of hammering the exchange.
* **Backoff** (:class:`~kalshi_ws.backoff.Backoff`): capped exponential with full jitter
  (``uniform(0, min(cap, initial * factor**n))`` for the ``n``-th consecutive failure). ``n`` resets once a
  connection has stayed up for ``healthy_after``.
* **Liveness**, two layers:

  1. the stale-stream watchdog. Kalshi pings every 10 s, so a live connection hears *something* (a complete
     data message, a server ping or a close frame) at least every 10 s. The websockets connection counts
     each (``_WatchedConnection.process_event``, which also sees control frames); the timer notes when the
     count last moved, so nothing time-related runs per frame. Progress is a *complete* message: fragments
     of a message do not count, nor do pings while a fragmented message is unfinished (a message that never
     ends delivers nothing). Pongs answering *our* pings do not count either: a server that answers pings
     but has stopped sending data and heartbeats is exactly the "silent stall" peer systems suffer from.
     Nothing for ``stale_after`` (30 s = three missed heartbeats) emits
     :class:`~kalshi_ws.events.StaleStream` and reconnects.
  2. websockets' own keepalive (``keepalive_interval``/``keepalive_timeout``): our pings detect a dead
     TCP path quickly even when the server's heartbeat is late; the library closes such a connection
     and the client reconnects.

  While the sink applies backpressure the watchdog is suspended (we are not reading, so silence is ours), and
  so are the protocol's timeouts: the time spent paused is added to them (``postpone_timeouts``), since the
  replies and snapshots they wait for are among the unread frames.
* **Deadline**: ``run(deadline=...)`` stops at a wall-clock time (epoch seconds or an aware ``datetime``).
  It is converted once, at the start of ``run``, to a target on the client's monotonic ``clock``, so NTP
  steps during the session cannot stretch or cut it. At the deadline the client stops reading, sends no further command,
  closes with code 1000 and emits :class:`~kalshi_ws.events.Stopped` (``reason="deadline"``).
* **Receiving**: websockets' parser splits each socket read into frames and the client handles every
  complete data message right there, synchronously (decode, protocol, ``sink.on_message``), instead of one
  ``await recv()`` per message; a reader task only sends the protocol's commands, applies backpressure and
  notices the end of the connection.
* **Backpressure**: when ``sink.paused`` turns true the socket stops being read
  (``transport.pause_reading()``) until ``await sink.wait_resumed()`` returns; the frames of the read in
  progress are still delivered. The TCP window closes and the server slows down (or, at Kalshi, eventually
  kills the subscription with error 25, which the protocol repairs).
* **Generations**: one connection at a time; the reader of connection ``N`` is finished and its socket
  closed before connection ``N + 1`` is opened, and a connection's frame callback is replaced by one that
  drops frames as soon as the connection ends, so no frame of ``N`` can be delivered after ``N + 1``
  started.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Opcode
from websockets.protocol import State

from . import events, messages
from .auth import Signer, signature_rejected_hint
from .backoff import Backoff
from .errors import AuthenticationError, KalshiError
from .messages import MAX_FRAME_BYTES
from .protocol import SeqScope, SessionProtocol, Subscription

if TYPE_CHECKING:
    from .orderbook import BookSet

__all__ = ["AuthenticationError", "ClientOptions", "ConnectionGaveUp", "KalshiWebSocketClient", "MessageSink"]

log = logging.getLogger(__name__)

StopReason = Literal["deadline", "requested", "auth_rejected", "fatal"]


class MessageSink(Protocol):
    """Where the client delivers data and session events (``kalshi_store.recorder.Recorder``)."""

    def on_message(self, message: messages.AnyMessage, generation: int, received_ns: int) -> None: ...

    def on_event(self, event: events.SessionEvent) -> None: ...

    @property
    def paused(self) -> bool: ...

    async def wait_resumed(self) -> None: ...


class ConnectionGaveUp(KalshiError, ConnectionError):
    """``ClientOptions.max_connect_failures`` consecutive connection attempts failed."""


@dataclass(frozen=True)
class ClientOptions:
    """Connection policy. Every default is chosen for Kalshi's production WebSocket."""

    #: First reconnect delay bound (s). The n-th consecutive failure waits ``uniform(0, bound)``.
    backoff_initial: float = 0.5
    #: Growth of the bound per consecutive failure.
    backoff_factor: float = 2.0
    #: The bound never exceeds this (s), so a long outage is retried at least every 30 s.
    backoff_cap: float = 30.0
    #: A connection that stayed up this long (s) resets the failure count (the next reconnect is quick).
    #: Shorter-lived connections keep growing the backoff, so accept-then-drop servers cause no storm.
    healthy_after: float = 10.0
    #: No frame and no server ping for this long (s) = a dead stream: 3 missed 10-s heartbeats.
    stale_after: float = 30.0
    #: Our own keepalive pings (websockets ``ping_interval``/``ping_timeout``); ``None`` disables them.
    keepalive_interval: float | None = 10.0
    keepalive_timeout: float | None = 20.0
    #: Largest accepted frame: Kalshi's server-side limit (big ``ok`` replies exceed websockets' 1 MiB).
    max_size: int | None = MAX_FRAME_BYTES
    #: Frames buffered by websockets before it stops reading the socket (backpressure high-water mark).
    max_queue: int = 256
    #: TCP connect + TLS + upgrade must finish within this (s).
    open_timeout: float = 10.0
    #: Wait this long (s) for the server's close frame when we close.
    close_timeout: float = 5.0
    #: Offer permessage-deflate (large saving on all-market ``ticker``/``trade`` streams).
    compression: bool = True
    #: Consecutive 401/403 handshakes before the client gives up with :class:`AuthenticationError`.
    max_auth_rejections: int = 3
    #: Consecutive failed attempts of any kind before giving up (``None``: retry until the deadline).
    max_connect_failures: int | None = None
    #: How often (s) ``SessionProtocol.poll()`` runs and the watchdog/deadline are checked.
    poll_interval: float = 0.25

    def backoff(self, rng: random.Random | None = None) -> Backoff:
        """The reconnect :class:`~kalshi_ws.backoff.Backoff` these options describe, drawing from ``rng``."""
        return Backoff(self.backoff_initial, self.backoff_factor, self.backoff_cap, rng=rng)

    def backoff_bound(self, failures: int) -> float:
        """Upper bound of the delay after ``failures`` consecutive failures (0 = after a healthy run)."""
        return self.backoff().bound(failures)


class _WatchedConnection(ClientConnection):
    """A websockets connection that hands complete text/binary frames straight to a callback.

    ``connect(create_connection=...)`` is public, but ``process_event`` (the per-frame hook overridden here) is
    not in websockets' documented API, so pyproject.toml bounds websockets to the tested major versions. The
    public alternatives cost what this avoids: ``recv()`` is one await per message and never shows server
    pings; a driver of our own around the public sans-I/O ``ClientProtocol`` would re-implement the handshake,
    keepalive, closing handshake and timeouts that websockets gets right.

    websockets' own parser (``self.protocol``, fed by ``data_received``) turns each socket read into
    frames; ``process_event`` then runs once per frame, synchronously, inside the read. While ``deliver``
    is set, every complete data message goes to it right there, instead of through websockets' message
    queue and one ``await recv()`` per message (that round trip cost more than decoding the frame).
    ``heard`` counts what the server said (complete data messages, close frames, and pings between
    messages; not fragments, not the pongs answering our pings); the watchdog timer compares it between
    ticks, so nothing time-related runs per frame. A fragmented message is assembled in one ``bytearray``
    bounded by ``max_size``.

    Before ``deliver`` is installed (between the handshake and the reader starting) data messages are
    kept in ``early`` and handed over when it is; after ``deliver`` is set to :func:`_discard` (the
    connection is ending), data messages are dropped: no frame of a connection is delivered after it ended.
    """

    heard: int = 0
    deliver: Callable[[bytes], None] | None = None
    on_lost: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early: list[bytes] = []
        #: The fragmented message being received (``None`` between messages). One buffer, so a message of
        #: 1-byte fragments costs about its size, not ~40 bytes per byte; websockets' ``max_size`` bounds the
        #: whole message (it counts the fragments received so far), so this buffer never exceeds it.
        self._fragments: bytearray | None = None

    def process_event(self, event: Any) -> None:
        if self.response is None:  # the handshake response
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if not event.fin:
                self._fragments = bytearray(event.data)
                return
            data = event.data
        elif opcode is _CONT:
            buffer = self._fragments
            if buffer is None:  # pragma: no cover - websockets rejects a continuation without a first frame
                return
            buffer += event.data
            if not event.fin:
                return
            self._fragments = None
            data = bytes(buffer)
            del buffer
        else:  # ping, pong, close: websockets handles them (pong replies, ping acks, closing handshake)
            # A ping is a heartbeat only between messages: pings interleaved with a message that never ends
            # must not keep a stream that delivers nothing alive. Pongs answer *our* pings: never progress.
            if opcode is _CLOSE or (opcode is _PING and self._fragments is None):
                self.heard += 1
            super().process_event(event)
            return
        self.heard += 1  # progress is a complete message, never a fragment
        deliver = self.deliver
        if deliver is None:
            self.early.append(bytes(data))
        else:
            deliver(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()


def _discard(data: bytes) -> None:
    """``deliver`` of a connection that ended: its remaining frames are not delivered."""


_TEXT, _BINARY, _CONT, _PING, _PONG, _CLOSE = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PING, Opcode.PONG,
                                                Opcode.CLOSE)


class _Connection:
    """One live connection: its socket, generation and why it ended."""

    __slots__ = ("ws", "generation", "opened_at", "resumed_at", "end_reason", "reader", "wake", "failure",
                 "heard", "heard_at")

    def __init__(self, ws: _WatchedConnection, generation: int, opened_at: float) -> None:
        self.ws = ws
        self.generation = generation
        self.opened_at = opened_at
        self.resumed_at = self.opened_at
        self.end_reason: str | None = None
        self.reader: asyncio.Task[str] | None = None
        #: Set by the frame callback when the reader has something to do (send, pause, stop, closed).
        self.wake = asyncio.Event()
        #: An exception raised by the protocol or the sink inside the frame callback (re-raised by the reader).
        self.failure: BaseException | None = None
        #: The watchdog's view: ``ws.heard`` at the last tick, and when it last changed.
        self.heard = ws.heard
        self.heard_at = self.opened_at

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.ws.deliver = _discard
        if self.reader is not None:
            self.reader.cancel()


class KalshiWebSocketClient:
    """Records one Kalshi WebSocket session into a :class:`MessageSink`, reconnecting until stopped.

    ``subscriptions`` build a default ``SessionProtocol`` (sharing ``clock``, with ``seq_scope``: what one ``seq``
    stream covers, ``"sid"`` unless the exchange is known to number per connection; see
    :class:`~kalshi_ws.protocol.SessionProtocol`); pass ``protocol`` instead to configure it fully.
    ``signer=None`` connects without ``KALSHI-ACCESS-*`` headers (only a simulator accepts that).
    ``clock`` (monotonic seconds) is what the watchdog, the deadline and ``healthy_after`` measure; ``wall_clock``
    (epoch seconds) is read once per ``set_deadline`` to turn a wall-clock deadline into a ``clock`` target.
    Tests pass fake clocks and advance them instead of sleeping; the waits themselves (``poll_interval``, backoff)
    stay on the event loop's time.
    """

    def __init__(
        self,
        url: str,
        sink: MessageSink,
        subscriptions: Iterable[Subscription] = (),
        *,
        signer: Signer | None = None,
        options: ClientOptions | None = None,
        protocol: SessionProtocol | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        seq_scope: SeqScope | None = None,
    ) -> None:
        if protocol is None:
            protocol = SessionProtocol(tuple(subscriptions), clock=clock, seq_scope=seq_scope or "sid")
        elif tuple(subscriptions):
            raise ValueError("pass either subscriptions or a protocol, not both")
        elif seq_scope is not None and seq_scope != protocol.seq_scope:
            raise ValueError(f"seq_scope={seq_scope!r} contradicts the protocol's seq_scope={protocol.seq_scope!r}; "
                             "set it on the SessionProtocol")
        self.url = url
        self._sink = sink
        self._signer = signer
        self.options = options or ClientOptions()
        self._protocol = protocol
        self._backoff = self.options.backoff(rng)
        self._clock = clock
        self._wall_clock = wall_clock
        self._conn: _Connection | None = None
        self._stop_reason: StopReason | None = None
        self._stop_detail = ""
        self._stop_event = asyncio.Event()
        self._kick = asyncio.Event()
        self._deadline: float | None = None
        self._runner: asyncio.Task[None] | None = None
        self._started = False
        self._signed_ms: str | None = None  # KALSHI-ACCESS-TIMESTAMP of the last handshake (explains a 401)
        #: Connection attempts made and handshakes that succeeded (for tests and session manifests).
        self.attempts = 0
        self.connections = 0

    # ------------------------------------------------------------------------------------------------
    # Public surface

    @property
    def protocol(self) -> SessionProtocol:
        return self._protocol

    @property
    def books(self) -> BookSet:
        return self._protocol.books

    @property
    def generation(self) -> int:
        return self._protocol.generation

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def update_markets(self, channel: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Add/remove markets on a channel; sent on the live connection now, and kept for reconnects."""
        self._protocol.update_markets(channel, add=tuple(add), remove=tuple(remove))
        self._kick.set()

    def stop(self) -> None:
        """Ask a running client to close cleanly; ``run()`` returns after ``Stopped(reason="requested")``."""
        self._request_stop("requested")

    def set_deadline(self, deadline: float | datetime | None) -> None:
        """Stop at ``deadline``: epoch seconds (``time.time()`` scale) or an aware ``datetime``.

        Converted now to a monotonic target, so later wall-clock steps do not move it.
        """
        if deadline is None:
            self._deadline = None
            return
        if isinstance(deadline, datetime) and deadline.tzinfo is None:
            raise ValueError("deadline must be a timezone-aware datetime (or epoch seconds)")
        wall = deadline.timestamp() if isinstance(deadline, datetime) else float(deadline)
        self._deadline = self._clock() + (wall - self._wall_clock())
        self._kick.set()

    async def run(self, *, deadline: float | datetime | None = None) -> None:
        """Connect, record and reconnect until the deadline, ``stop()`` or a fatal error.

        Raises :class:`AuthenticationError` after too many consecutive 401/403 handshakes and
        :class:`ConnectionGaveUp` after ``max_connect_failures``; in every case the last event delivered is
        :class:`~kalshi_ws.events.Stopped`. A client runs once.
        """
        if self._started:
            raise RuntimeError("a KalshiWebSocketClient runs once; create a new one (the protocol can be reused)")
        self._started = True
        if deadline is not None:
            self.set_deadline(deadline)
        reason: StopReason = "fatal"
        try:
            await self._run_loop()
            reason = self._stop_reason or "requested"
        except AuthenticationError as exc:
            reason, self._stop_detail = "auth_rejected", str(exc)
            raise
        except ConnectionGaveUp as exc:
            reason, self._stop_detail = "fatal", str(exc)
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                reason, self._stop_detail = "requested", "cancelled"
            else:
                reason, self._stop_detail = "fatal", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._deliver_events()
            self._sink.on_event(events.Stopped(generation=self.generation, at_ns=time.time_ns(),
                                               reason=reason, detail=self._stop_detail))

    async def __aenter__(self) -> KalshiWebSocketClient:
        self._runner = asyncio.create_task(self.run(), name="kalshi-ws-client")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._runner is not None:
            await self._runner

    # ------------------------------------------------------------------------------------------------
    # Connection loop

    def _request_stop(self, reason: StopReason, detail: str = "") -> None:
        if self._stop_reason is None:
            self._stop_reason, self._stop_detail = reason, detail
        self._stop_event.set()
        self._kick.set()
        if self._conn is not None:
            self._conn.end("deadline" if reason == "deadline" else "client stopped")

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._clock()

    def _check_deadline(self) -> bool:
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            self._request_stop("deadline")
            return True
        return False

    async def _run_loop(self) -> None:
        failures = 0
        auth_rejections = 0
        while self._stop_reason is None and not self._check_deadline():
            self.attempts += 1
            try:
                ws = await self._open()
            except InvalidStatus as exc:
                failures += 1
                status = exc.response.status_code
                detail = _body_excerpt(exc.response.body) or exc.response.reason_phrase
                if status in (401, 403):
                    auth_rejections += 1
                    self._emit(events.AuthRejected(generation=self.generation, at_ns=time.time_ns(),
                                                   status=status, detail=detail))
                    if auth_rejections >= self.options.max_auth_rejections:
                        self._connect_failed(failures, f"HTTP {status}", status, retry_in=None)
                        raise self._auth_error(status, detail, auth_rejections,
                                               exc.response.headers.get("Date")) from None
                else:
                    auth_rejections = 0
                await self._back_off(failures, f"HTTP {status}: {detail}", status)
                continue
            except InvalidURI:
                raise
            except _StoppedWhileConnecting:
                break
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                failures += 1
                await self._back_off(failures, f"{type(exc).__name__}: {exc}", None)
                continue
            auth_rejections = 0
            conn = await self._serve(ws)
            if self._clock() - conn.opened_at >= self.options.healthy_after:
                failures = 0
            else:
                failures += 1
            if self._stop_reason is None and not self._check_deadline():
                await self._sleep(self._backoff.delay(failures))

    async def _open(self) -> _WatchedConnection:
        """One connection attempt with freshly signed headers; raises _StoppedWhileConnecting if stopped meanwhile."""
        opts = self.options
        timeout = opts.open_timeout
        remaining = self._remaining()
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))
        headers = self._signer.websocket_headers() if self._signer is not None else None
        self._signed_ms = headers.get("KALSHI-ACCESS-TIMESTAMP") if headers else None
        attempt = connect(
            self.url,
            additional_headers=headers,
            compression="deflate" if opts.compression else None,
            open_timeout=timeout,
            ping_interval=opts.keepalive_interval,
            ping_timeout=opts.keepalive_timeout,
            close_timeout=opts.close_timeout,
            max_size=opts.max_size,
            max_queue=opts.max_queue,
            user_agent_header=_USER_AGENT,
            create_connection=_WatchedConnection,
            logger=_WS_LOG,
        )
        task: asyncio.Task[ClientConnection] = asyncio.create_task(_awaited(attempt))
        stopper = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled while connecting: abandon the attempt
            task.cancel()
            raise
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            try:
                ws = await task
            except BaseException:
                raise _StoppedWhileConnecting() from None
            await ws.close()
            raise _StoppedWhileConnecting()
        ws = task.result()
        assert isinstance(ws, _WatchedConnection)
        return ws

    def _auth_error(self, status: int, detail: str, attempts: int, date: str | None = None) -> AuthenticationError:
        who = f"API key id {self._signer.key_id}" if self._signer else "no API key configured"
        said = f"; server said {detail!r}" if detail else ""
        hint = signature_rejected_hint(date, self._signed_ms) if status == 401 and self._signer else ""
        return AuthenticationError(status, f"{who}, {attempts} consecutive rejections at {self.url}{said}", hint)

    def _connect_failed(self, failures: int, reason: str, status: int | None, retry_in: float | None) -> None:
        self._emit(events.ConnectFailed(generation=self.generation, at_ns=time.time_ns(), attempt=failures,
                                        reason=reason, status=status, retry_in=retry_in))

    async def _back_off(self, failures: int, reason: str, status: int | None) -> None:
        limit = self.options.max_connect_failures
        if limit is not None and failures >= limit:
            self._connect_failed(failures, reason, status, retry_in=None)
            raise ConnectionGaveUp(f"gave up on {self.url} after {failures} consecutive failed connection "
                                   f"attempts; last: {reason}")
        delay = self._backoff.delay(failures - 1)
        self._connect_failed(failures, reason, status, retry_in=delay)
        log.warning("connection attempt %d to %s failed (%s); retrying in %.2f s", failures, self.url,
                    reason, delay)
        await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, cut short by ``stop()`` or the deadline."""
        remaining = self._remaining()
        if remaining is not None:
            delay = min(delay, max(0.0, remaining))
        if delay > 0:
            try:
                async with asyncio.timeout(delay):
                    await self._stop_event.wait()
            except TimeoutError:
                pass
        self._check_deadline()

    # ------------------------------------------------------------------------------------------------
    # One connection

    async def _serve(self, ws: _WatchedConnection) -> _Connection:
        proto = self._protocol
        proto.connection_opened(self.url)
        self.connections += 1
        conn = _Connection(ws, proto.generation, self._clock())
        self._conn = conn
        ticker: asyncio.Task[None] | None = None
        try:
            await self._drain(conn)
            if self._stop_reason is not None:
                conn.end("client stopped")
            elif conn.end_reason is None:
                conn.reader = asyncio.create_task(self._read(conn), name=f"kalshi-ws-read-{conn.generation}")
                ticker = asyncio.create_task(self._tick(conn), name=f"kalshi-ws-tick-{conn.generation}")
                await asyncio.wait((conn.reader, ticker), return_when=asyncio.FIRST_COMPLETED)
                for task in (conn.reader, ticker):
                    task.cancel()
                results = await asyncio.gather(conn.reader, ticker, return_exceptions=True)
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                        raise result
                if isinstance(results[0], str):
                    conn.end(results[0])
        except BaseException as exc:
            if self._stop_reason is None:  # a failing sink or protocol ends the session: never reconnect
                self._stop_reason = "requested" if isinstance(exc, asyncio.CancelledError) else "fatal"
            conn.end(f"client stopped: {type(exc).__name__}")
            raise
        finally:
            self._conn = None
            for leftover in (conn.reader, ticker):
                if leftover is not None and not leftover.done():
                    leftover.cancel()
            await self._close(conn, conn.end_reason or "connection ended")
        return conn

    async def _close(self, conn: _Connection, reason: str) -> None:
        will_reconnect = self._stop_reason is None and not self._check_deadline()
        try:
            await conn.ws.close()
        except Exception:  # the socket may already be gone; closing is best effort
            log.debug("error while closing the connection", exc_info=True)
        self._protocol.connection_lost(reason, will_reconnect)
        self._protocol.take_commands()  # nothing may be sent on a closed connection
        self._deliver_events()
        log.info("connection %d closed: %s", conn.generation, reason)

    async def _read(self, conn: _Connection) -> str:
        """The hot path: frames are handled inside the socket read that completes them (``_on_frame``,
        installed as the connection's ``deliver``); this task only does what cannot happen there: send
        the protocol's commands, apply the sink's backpressure, notice the end of the connection."""
        ws = conn.ws
        proto = self._protocol
        sink = self._sink
        wake = conn.wake
        ws.on_lost = wake.set
        deliver = self._frame_handler(conn)
        early, ws.early = ws.early, []
        ws.deliver = deliver
        for data in early:  # frames that arrived before the reader started, in order
            if ws.deliver is not deliver:  # a failure or a reconnect request: the rest is not delivered
                break
            deliver(data)
        transport = ws.transport
        while True:
            if conn.failure is not None:
                raise conn.failure
            if proto.has_output:
                await self._drain(conn)
            if proto.reconnect_requested:
                ws.deliver = _discard
                return f"reconnect requested: {proto.reconnect_requested}"
            if ws.protocol.state is State.CLOSED:
                ws.deliver = _discard
                return _describe_close(ws.protocol.close_exc)
            if sink.paused:
                # Stop reading the socket: the TCP window closes and the server slows down. Replies and
                # snapshots wait in the socket meanwhile, so the protocol's timeouts stop too.
                paused_at = self._clock()
                transport.pause_reading()
                try:
                    await sink.wait_resumed()
                finally:
                    if not transport.is_closing():
                        transport.resume_reading()
                conn.resumed_at = self._clock()
                proto.postpone_timeouts(conn.resumed_at - paused_at)
                continue
            wake.clear()
            if conn.failure is None and not proto.has_output and ws.protocol.state is not State.CLOSED:
                await wake.wait()

    def _frame_handler(self, conn: _Connection) -> Callable[[bytes], None]:
        """The per-frame callback of ``conn``: decode, protocol, sink; wakes the reader when needed."""
        proto = self._protocol
        receive = proto.receive
        sink = self._sink
        on_message = sink.on_message
        generation = conn.generation
        time_ns = time.time_ns
        wake = conn.wake
        ws = conn.ws

        def on_frame(data: bytes) -> None:
            received_ns = time_ns()
            try:
                message = receive(data, received_ns)
                if message is not None:
                    on_message(message, generation, received_ns)
            except BaseException as exc:  # the reader re-raises it: a failing sink/protocol ends the session
                conn.failure = exc
                ws.deliver = _discard
                ws.transport.pause_reading()
                wake.set()
                return
            if proto.has_output or sink.paused:
                if proto.reconnect_requested:
                    ws.deliver = _discard  # nothing more of this connection is delivered
                wake.set()
            elif proto.reconnect_requested:
                ws.deliver = _discard
                wake.set()

        return on_frame

    async def _tick(self, conn: _Connection) -> None:
        """Timer: protocol timeouts, watchdog, deadline, kicked commands. Never per frame."""
        proto = self._protocol
        opts = self.options
        while conn.end_reason is None:
            timeout = opts.poll_interval
            remaining = self._remaining()
            if remaining is not None:
                timeout = max(0.0, min(timeout, remaining))
            if not self._kick.is_set():
                try:
                    async with asyncio.timeout(timeout):
                        await self._kick.wait()
                except TimeoutError:
                    pass
            self._kick.clear()
            if self._stop_reason is not None or self._check_deadline():
                return
            now = self._clock()
            if self._sink.paused:  # not reading: neither the watchdog nor the protocol's timeouts run
                conn.resumed_at = now
                await self._drain(conn)  # commands asked for meanwhile (update_markets) still go out
                continue
            proto.poll()
            await self._drain(conn)
            if proto.reconnect_requested:
                conn.end(f"reconnect requested: {proto.reconnect_requested}")
                return
            heard = conn.ws.heard
            if heard != conn.heard:
                conn.heard, conn.heard_at = heard, now
            silent = now - max(conn.heard_at, conn.resumed_at)
            if silent >= opts.stale_after:
                self._emit(events.StaleStream(generation=conn.generation, at_ns=time.time_ns(),
                                              silent_for=round(silent, 3)))
                conn.end(f"stale stream: nothing heard for {silent:.1f} s")
                return

    async def _drain(self, conn: _Connection) -> None:
        """Deliver the protocol's events, then send its commands (unless the connection is ending)."""
        self._deliver_events()
        commands = self._protocol.take_commands()
        if conn.end_reason is not None or self._stop_reason is not None:
            return
        send = conn.ws.send
        try:
            for command in commands:
                await send(command, text=True)
        except ConnectionClosed as exc:  # the reader sees the same close; end the connection either way
            conn.end(_describe_close(exc))

    def _deliver_events(self) -> None:
        on_event = self._sink.on_event
        for event in self._protocol.take_events():
            on_event(event)

    def _emit(self, event: events.SessionEvent) -> None:
        self._deliver_events()  # keep the protocol's earlier events first
        self._sink.on_event(event)


class _StoppedWhileConnecting(Exception):
    """Internal: the client was stopped while a connection attempt was in flight."""


async def _awaited(attempt: Awaitable[ClientConnection]) -> ClientConnection:
    return await attempt


_USER_AGENT = f"kalshi-ingest/0.1 (websockets/{websockets.__version__})"


class _RedactSignature(logging.Filter):
    """websockets logs every handshake header at DEBUG; never let the signature reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "kalshi-access-signature":
            record.args = (args[0], "<redacted>")
        return True


#: The logger websockets uses for our connections (instead of ``websockets.client``).
_WS_LOG = logging.getLogger("kalshi_ws.client.websockets")
_WS_LOG.addFilter(_RedactSignature())


def _body_excerpt(body: bytes | bytearray | None, limit: int = 300) -> str:
    if not body:
        return ""
    text = bytes(body[:limit]).decode("utf-8", "replace").strip()
    return text + ("..." if len(body) > limit else "")


def _describe_close(exc: ConnectionClosed) -> str:
    if exc.rcvd is not None:
        return f"closed by server: code {exc.rcvd.code} {exc.rcvd.reason!r}".rstrip()
    if exc.sent is not None:
        return f"closed by client: code {exc.sent.code} {exc.sent.reason!r}"
    return "connection lost without a close frame"
