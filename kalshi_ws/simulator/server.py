"""The wire-compatible exchange simulator: one loopback port serving the WebSocket API on
``/trade-api/ws/v2``, a GET-only REST mirror on ``/trade-api/v2/...`` and a control API on ``/_sim/...``.

Documented choices for the spec's open questions (section 12):

* ``seq`` is per sid; snapshots and ``get_snapshot`` replies take the next seq. ``seq_scope="connection"``
  numbers every sequenced frame of a connection in one stream instead (the other reading of question 4); control
  replies then carry the connection's current number.
* ``ok`` (update_subscription) on a sequenced channel carries the sid's *current* seq and does not consume a
  number (``ok_consumes_seq=True`` makes it take the next one); ``unsubscribed`` carries the final seq;
  asynchronous subscription errors (10/25) carry the current seq and do not consume one.
* One ``subscribed`` per channel; re-subscribing to an active channel merges tickers and answers
  ``subscribed`` with the existing sid (snapshots only for the newly added markets).
* Unknown market tickers are accepted silently (no snapshot) unless ``unknown_market_error=True`` (code 16).
* Handshake failures: 401 with the JSON body Kalshi sends (``auth_failure_status=403`` gives the
  CloudFront-style plain ``Forbidden``). REST requests are signature-checked (``rest_auth="required"``);
  ``"optional"`` checks only requests that carry the headers, ``"off"`` never checks.
* Private channels (fill, user_orders, market_positions, order_group_updates, communications) carry the one
  simulated account, which every registered key shares.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import bisect
import collections
import contextlib
import email.utils
import http
import json
import logging
import math
import random
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kalshi_ws import messages as m
from kalshi_ws.auth import REST_PREFIX, WS_PATH, generate_key_pair, load_public_key, verify_signature

from .faults import ARMED, HANDSHAKE, KINDS, ArmedFault
from .model import UNSEQUENCED, Emit, MarketModel, encode_numbers, market_json, status_filter_matches

log = logging.getLogger(__name__)

ERROR_TEXT = {
    1: "Unable to process message", 2: "Params required", 3: "Channels required", 4: "Subscription IDs required",
    5: "Unknown command", 7: "Unknown subscription ID", 8: "Unknown channel name", 9: "Authentication required",
    10: "Channel error", 11: "Invalid parameter", 12: "Exactly one subscription ID is required",
    13: "Unsupported action", 14: "Market Ticker required", 15: "Action required", 16: "Market not found",
    19: "shard_factor must be > 0", 20: "shard_factor is required when shard_key is set",
    21: "shard_key must be >= 0 and < shard_factor", 22: "shard_factor must be <= 100",
    25: "Subscription buffer overflow", 26: "Subscription market limit exceeded", 27: "Too many requests",
}
#: Channels that accept a market filter (and add_markets / delete_markets).
MARKET_FILTER_CHANNELS = frozenset({"orderbook_delta", "ticker", "trade", "fill", "user_orders", "market_positions"})
ENTITLED_CHANNELS = frozenset({"cfbenchmarks_value", "cfbenchmarks_value_5hz", "pyth_value"})
SEQUENCED_CHANNELS = frozenset({"orderbook_delta", "trade", "market_lifecycle_v2", "multivariate_market_lifecycle",
                                "communications", "order_group_updates", *ENTITLED_CHANNELS})

_AUTH_BODY = ('{"error":{"code":"authentication_error","message":"authentication_error",'
              '"details":"rpc error: code = Unauthenticated desc = %s"}}')
_CLOSE = object()
_RFQ_FRAMES = (m.RfqCreated, m.RfqDeleted)


class _Stop(Exception):
    pass


@dataclass
class Sub:
    sid: int
    channel: str
    tickers: list[str] | None  # None = all markets
    use_yes_price: bool = False
    skip_ticker_ack: bool = False
    by_ids: bool = False  # ticker subscription made with market ids: ok replies list market_ids
    user_filter: str = ""
    shard_factor: int = 0
    shard_key: int = 0
    seq: int = 0
    held: tuple[str, bytes] | None = None  # reorder fault: frame held back until the next one

    @property
    def sequenced(self) -> bool:
        return self.channel in SEQUENCED_CHANNELS

    def wants(self, ticker: str | None) -> bool:
        if self.tickers is None or ticker is None or self.channel not in MARKET_FILTER_CHANNELS:
            if self.channel == "communications" and self.shard_factor and ticker is not None:
                return (zlib.crc32(ticker.encode()) % self.shard_factor) == self.shard_key
            return True
        return ticker in self._set

    def __post_init__(self) -> None:
        self._set = set(self.tickers or ())

    def set_tickers(self, tickers: list[str] | None) -> None:
        self.tickers = tickers
        self._set = set(tickers or ())


@dataclass
class Conn:
    id: int
    ws: ServerConnection
    key_id: str
    queue: collections.deque[Any] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    subs: dict[int, Sub] = field(default_factory=dict)
    by_channel: dict[str, Sub] = field(default_factory=dict)
    next_sid: int = 1
    armed: list[ArmedFault] = field(default_factory=list)
    stalled_until: float = 0.0
    pings_stalled_until: float = 0.0
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    cmd_times: collections.deque[float] = field(default_factory=collections.deque)
    closed: bool = False
    pings_sent: int = 0
    #: The connection's last ``seq`` (``seq_scope="connection"`` only).
    seq: int = 0

    def put(self, kind: str, data: bytes) -> None:
        self.queue.append((kind, data))
        self.wake.set()


class Simulator:
    """A local Kalshi exchange. Use as ``async with Simulator(markets=4, seed=1, rate=200) as sim: ...``.

    ``rate`` is model messages per second (0 = no automatic activity, drive it with :meth:`step`;
    ``math.inf`` = as fast as the consumers take them).
    """

    def __init__(
        self,
        *,
        markets: int | Sequence[str] = 8,
        seed: int = 0,
        rate: float = 50.0,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval: float = 10.0,
        public_keys: Mapping[str, Path] | None = None,
        timestamp_tolerance: float = 5.0,
        rest_auth: str = "required",
        max_sessions_per_key: int = 200,
        max_markets_per_subscription: int = 500_000,
        max_commands_per_second: int = 10_000,
        ok_consumes_seq: bool = False,
        unknown_market_error: bool = False,
        auth_failure_status: int = 401,
        rest_rate_limit: float | None = None,
        compression: str | None = "deflate",
        high_water: int = 20_000,
        entitled: bool = False,
        buffer_limit: int | None = None,
        max_missed_pongs: int | None = None,
        seq_scope: Literal["sid", "connection"] = "sid",
    ) -> None:
        if seq_scope not in ("sid", "connection"):
            raise ValueError(f"seq_scope must be 'sid' or 'connection', not {seq_scope!r}")
        self.model = MarketModel(list(markets) if not isinstance(markets, int) else markets, seed=seed)
        self.seed = seed
        self.rate = rate
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.timestamp_tolerance = timestamp_tolerance
        self.rest_auth = rest_auth
        self.max_sessions_per_key = max_sessions_per_key
        self.max_markets_per_subscription = max_markets_per_subscription
        self.max_commands_per_second = max_commands_per_second
        self.ok_consumes_seq = ok_consumes_seq
        self.seq_scope = seq_scope
        self.unknown_market_error = unknown_market_error
        self.auth_failure_status = auth_failure_status
        self.rest_rate_limit = rest_rate_limit
        self.compression = compression
        self.high_water = high_water
        self.entitled = entitled
        self.buffer_limit = buffer_limit
        self.max_missed_pongs = max_missed_pongs
        self.public_keys: dict[str, rsa.RSAPublicKey] = {}
        for kid, path in (public_keys or {}).items():
            self.public_keys[kid] = load_public_key(Path(path).read_bytes())
        if data_dir is None:  # one key pair per process (RSA generation is slow), in a temp dir
            data_dir, key_id, priv, pub = _process_key()
        else:
            key_id, priv, pub = generate_key_pair(Path(data_dir) / "keys")
        self.data_dir = Path(data_dir)
        self.key_id: str = key_id
        self.private_key_path: Path = priv
        self.public_key_path: Path = pub
        self.public_keys[key_id] = load_public_key(pub.read_bytes())

        self.tickers: list[str] = list(self.model.tickers)
        self.series: list[str] = list(self.model.series)
        self.events: list[str] = sorted({self.model.markets[t].event_ticker for t in self.tickers})
        self.faults_injected: list[dict[str, Any]] = []
        self.connections: dict[int, Conn] = {}
        self.sent_frames: dict[int, collections.Counter[str]] = {}
        self.handshakes: list[dict[str, Any]] = []  # every upgrade attempt: conn/key/status
        self._next_conn = 1
        self._pending_keys: dict[int, str] = {}
        self._next_faults: list[ArmedFault] = []
        self._auth_rejects: list[str] = []
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = asyncio.Event()
        self._running.set()
        self._produced_event = asyncio.Event()
        self._bucket = (rest_rate_limit or 0.0, time.monotonic())
        self._random_task: asyncio.Task[Any] | None = None
        self.produced = 0
        self.base_url = ""
        #: Internal errors (simulator bugs) caught so a session survives them; tests assert this stays empty.
        self.errors: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await serve(
            self._handler, self.host, self.port, process_request=self._process_request, ping_interval=None,
            ping_timeout=None, max_size=m.MAX_FRAME_BYTES, compression=self.compression, server_header=None,
            logger=log,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._tasks.append(asyncio.create_task(self._generate(), name="sim-generate"))

    async def stop(self) -> None:
        if self._random_task is not None:
            self._random_task.cancel()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._server is not None:
            self._server.close()  # close frames 1001 to every client...
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), 1.0)
            for c in list(self.connections.values()):  # ...but never wait on a client that stopped reading
                c.ws.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}{REST_PREFIX}"

    # ------------------------------------------------------------------ ground truth

    def trade_tape(self, ticker: str | None = None) -> list[dict[str, Any]]:
        """Every trade so far, oldest first, REST-shaped plus ``ts_ms`` (exchange time in ms)."""
        if ticker is None:
            return [dict(t) for t in self.model.tape]
        return [dict(self.model.tape[i]) for i in self.model.tape_index.get(ticker, [])]

    def account_fills(self, ticker: str | None = None) -> list[dict[str, Any]]:
        """Every fill of the simulated account so far, oldest first, REST-shaped plus ``ts_ms``."""
        return [dict(f) for f in self.model.fills if ticker is None or f["ticker"] == ticker]

    def book(self, ticker: str) -> dict[str, list[list[str]]]:
        """Current book, REST ``orderbook_fp`` shape, ascending, NO side in no-leg prices."""
        return self.model.book(ticker)

    def book_at(self, ticker: str, ts_ms: int) -> dict[str, list[list[str]]]:
        """The book as it was after every change with exchange time ``<= ts_ms``."""
        return self.model.book_at(ticker, ts_ms)

    def step(self, n: int = 1) -> int:
        """Run ``n`` model actions now (for ``rate=0`` tests); returns the number of messages produced."""
        total = 0
        for _ in range(n):
            emits = self.model.step()
            total += len(emits)
            self._fanout(emits)
        self.produced += total
        return total

    def open_market(self, series: str | None = None) -> str:
        """Open a tradeable market in ``series`` now (lifecycle ``created`` + ``activated``, then books, trades and
        tickers); returns its ticker. REST lists it as open at once."""
        ticker, emits = self.model.open_market(series)
        self.tickers.append(ticker)
        self.events.append(self.model.markets[ticker].event_ticker)
        self.produced += len(emits)
        self._fanout(emits)
        return ticker

    def close_market(self, ticker: str) -> None:
        """Close and settle a market now (``deactivated``, ``determined``, ``settled``); it stops trading."""
        emits = self.model.close_market(ticker)
        if ticker in self.tickers:
            self.tickers.remove(ticker)
        self.produced += len(emits)
        self._fanout(emits)

    async def pause_market_activity(self) -> None:
        self._running.clear()

    async def resume(self) -> None:
        self._running.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true (checked after every generated batch and every 10 ms)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"condition not met within {timeout:.1f}s")
            self._produced_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._produced_event.wait(), min(left, 0.01))

    # ------------------------------------------------------------------ generation

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        produced = 0
        was_running = True
        while True:
            if not self._running.is_set():
                was_running = False
                await self._running.wait()
            if not was_running:
                t0, produced, was_running = loop.time(), 0, True
            if self.rate <= 0:
                await asyncio.sleep(0.05)
                t0, produced = loop.time(), 0
                continue
            # Backpressure: wait while a (non-stalled) consumer is far behind.
            now = time.monotonic()
            if any(len(c.queue) > self.high_water and c.stalled_until <= now for c in self.connections.values()):
                await asyncio.sleep(0.002)
                continue
            if math.isinf(self.rate):
                budget = 200
            else:
                budget = int((loop.time() - t0) * self.rate) - produced
                if budget <= 0:
                    await asyncio.sleep(max(0.001, min(0.05, (produced + 1) / self.rate - (loop.time() - t0))))
                    continue
                budget = min(budget, 500)
            n = 0
            try:
                while n < budget:
                    emits = self.model.step()
                    n += len(emits) or 1
                    self.produced += len(emits)
                    self._fanout(emits)
            except Exception as exc:
                log.exception("simulator market model failed")
                self.errors.append(f"generator: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)
            produced += n
            self._produced_event.set()
            await asyncio.sleep(0)

    def _fanout(self, emits: list[Emit]) -> None:
        for conn in list(self.connections.values()):
            if conn.closed:
                continue
            by_channel = conn.by_channel
            for e in emits:
                sub = by_channel.get(e.channel)
                if sub is None or not sub.wants(e.ticker):
                    continue
                if sub.user_filter == "self" and e.frame in _RFQ_FRAMES and e.payload.creator_id != self.model.comm_id:
                    continue
                payload = e.yes_payload if (sub.use_yes_price and e.yes_payload is not None) else e.payload
                if e.frame in UNSEQUENCED:
                    self._put_frame(conn, sub, e.frame(sid=sub.sid, msg=payload))
                else:
                    self._put_seq(conn, sub, e.frame, payload)
                if self.buffer_limit is not None and len(conn.queue) > self.buffer_limit:
                    self._immediate(conn, "sub_error", sid=sub.sid, code=25, reason="buffer_limit")

    def _put_frame(self, conn: Conn, sub: Sub, frame: Any) -> None:
        kind = type(frame).__struct_config__.tag
        conn.put(kind, m.encode(frame))

    def _next_seq(self, conn: Conn, sub: Sub) -> int:
        """Take the next number of ``sub``'s stream: its own, or the connection's (``seq_scope``)."""
        if self.seq_scope == "connection":
            conn.seq += 1
            sub.seq = conn.seq
        else:
            sub.seq += 1
        return sub.seq

    def _current_seq(self, conn: Conn, sub: Sub) -> int:
        """The current position of ``sub``'s stream, as control replies carry it."""
        return conn.seq if self.seq_scope == "connection" else sub.seq

    def _put_seq(self, conn: Conn, sub: Sub, cls: type, payload: Any, **extra: Any) -> None:
        self._next_seq(conn, sub)
        frame = cls(sid=sub.sid, seq=sub.seq, msg=payload, **extra)
        kind = cls.__struct_config__.tag  # type: ignore[attr-defined]
        data = m.encode(frame)
        if sub.held is not None:  # a reorder fault held the previous frame back: send it after this one
            held, sub.held = sub.held, None
            conn.put(kind, data)
            conn.put(*held)
            return
        fault = None
        if conn.armed:
            for f in conn.armed:
                if f.matches(sub.channel, sub.sid, kind):
                    fault = f
                    break
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    conn.armed.remove(fault)
                self._record(fault.kind, conn.id, sid=sub.sid, seq=sub.seq, channel=sub.channel, type=kind)
        self._emit_with_fault(conn, fault, kind, data, frame, sub)

    def _emit_with_fault(self, conn: Conn, fault: ArmedFault | None, kind: str, data: bytes, frame: Any,
                         sub: Sub | None = None) -> None:
        if fault is None:
            conn.put(kind, data)
        elif fault.kind == "drop":
            return
        elif fault.kind == "duplicate":
            conn.put(kind, data)
            conn.put(kind, data)
        elif fault.kind == "reorder" and sub is not None:
            sub.held = (kind, data)
        elif fault.kind == "numbers":
            conn.put(kind, encode_numbers(frame))
        elif fault.kind == "close_mid_snapshot":
            conn.put(kind, data)
            conn.queue.append(_CLOSE)
            conn.wake.set()
        else:
            conn.put(kind, data)

    def _record(self, kind: str, conn: int | None, **info: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": kind, "time_ms": time.time_ns() // 1_000_000, "conn": conn,
                               "sid": info.pop("sid", None), "seq": info.pop("seq", None), **info}
        self.faults_injected.append(rec)
        return rec

    # ------------------------------------------------------------------ handshake / HTTP

    def _check_auth(self, headers: Headers, method: str, path: str) -> str | None:
        """The failure ``details`` code, or None when the request is correctly signed."""
        key = headers.get("KALSHI-ACCESS-KEY")
        ts = headers.get("KALSHI-ACCESS-TIMESTAMP")
        sig = headers.get("KALSHI-ACCESS-SIGNATURE")
        if not key or not ts or not sig:
            return "MISSING_API_KEY_HEADERS"
        public = self.public_keys.get(key)
        if public is None:
            return "NOT_FOUND"
        try:
            ts_ms = int(ts)
        except ValueError:
            return "INVALID_TIMESTAMP"
        if abs(time.time() * 1000 - ts_ms) > self.timestamp_tolerance * 1000:
            return "INCORRECT_API_KEY_SIGNATURE"
        if not verify_signature(public, ts, method, path, sig):
            return "INCORRECT_API_KEY_SIGNATURE"
        return None

    def _auth_failure(self, connection: ServerConnection, details: str, status: int | None = None) -> Response:
        status = status or self.auth_failure_status
        if status == 403:
            resp = connection.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
            resp.headers["x-cache"] = "Error from cloudfront"
            return resp
        return _json_response(connection, status, (_AUTH_BODY % details).encode())

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path.startswith("/_sim/"):
            return self._control(connection, path, query)
        if path.startswith(REST_PREFIX + "/") or path == REST_PREFIX:
            return self._rest(connection, request, path, query)
        if path != WS_PATH:
            return _json_response(connection, 404, b'{"error":{"code":"not_found","message":"not found"}}')
        conn_no = self._next_conn
        if self._auth_rejects:
            mode = self._auth_rejects.pop(0)
            self._record("auth_reject", conn_no, mode=mode)
            self.handshakes.append({"conn": None, "status": int(mode), "details": "injected"})
            return self._auth_failure(connection, "INCORRECT_API_KEY_SIGNATURE", int(mode))
        details = self._check_auth(request.headers, "GET", WS_PATH)
        if details is not None:
            self.handshakes.append({"conn": None, "status": self.auth_failure_status, "details": details})
            return self._auth_failure(connection, details)
        key = request.headers["KALSHI-ACCESS-KEY"]
        active = sum(1 for c in self.connections.values() if c.key_id == key and not c.closed)
        if active >= self.max_sessions_per_key:
            self.handshakes.append({"conn": None, "status": 429, "details": "session limit"})
            return _json_response(connection, 429, b'{"error":"too many requests"}')
        self._pending_keys[id(connection)] = key
        return None

    # ------------------------------------------------------------------ WebSocket session

    async def _handler(self, ws: ServerConnection) -> None:
        cid = self._next_conn
        self._next_conn += 1
        key = self._pending_keys.pop(id(ws), "")
        conn = Conn(cid, ws, key)
        self.connections[cid] = conn
        self.sent_frames[cid] = conn.sent
        self.handshakes.append({"conn": cid, "status": 101, "key": key})
        for f in self._next_faults:
            if f.kind in ARMED:
                conn.armed.append(ArmedFault(f.kind, f.channel, f.sid, f.remaining, dict(f.params)))
            else:
                self._immediate(conn, f.kind, sid=f.sid, channel=f.channel, **f.params)
        self._next_faults.clear()
        writer = asyncio.create_task(self._writer(conn))
        pinger = asyncio.create_task(self._pinger(conn))
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    self._error(conn, None, 1)
                    continue
                self._command(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            writer.cancel()
            pinger.cancel()
            for t in (writer, pinger):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self.connections.pop(cid, None)

    async def _writer(self, conn: Conn) -> None:
        ws = conn.ws
        q = conn.queue
        try:
            while True:
                now = time.monotonic()
                if not q or conn.stalled_until > now:
                    conn.wake.clear()
                    if conn.stalled_until > now:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(conn.wake.wait(), conn.stalled_until - now)
                    else:
                        await conn.wake.wait()
                    continue
                item = q.popleft()
                if item is _CLOSE:
                    ws.transport.abort()
                    return
                kind, data = item
                await ws.send(data, text=True)
                conn.sent[kind] += 1
        except ConnectionClosed:
            return

    async def _pinger(self, conn: Conn) -> None:
        """Ping ``heartbeat`` every interval; optionally close after ``max_missed_pongs`` unanswered pings."""
        waiter: Any = None
        missed = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if conn.pings_stalled_until > time.monotonic():
                continue
            try:
                if waiter is not None and not waiter.done():
                    missed += 1
                    if self.max_missed_pongs is not None and missed >= self.max_missed_pongs:
                        self._record("pong_timeout", conn.id, missed=missed)
                        await conn.ws.close(1011, "keepalive ping timeout")
                        return
                    async with conn.ws.send_context():  # same payload while the first is still unanswered
                        conn.ws.protocol.send_ping(b"heartbeat")
                else:
                    missed = 0
                    waiter = await conn.ws.ping(b"heartbeat")
                conn.pings_sent += 1
                conn.sent["ping"] += 1
            except ConnectionClosed:
                return

    def _reply(self, conn: Conn, obj: dict[str, Any]) -> None:
        if "id" in obj and not obj["id"]:  # id 0 / absent means "no id": do not echo it
            del obj["id"]
        conn.put(obj["type"], json.dumps(obj, separators=(",", ":")).encode())

    def _error(self, conn: Conn, cmd_id: int | None, code: int, **extra: Any) -> None:
        msg: dict[str, Any] = {"code": code, "msg": ERROR_TEXT.get(code, "error")}
        for k in ("market_ticker", "market_tickers"):
            if k in extra:
                msg[k] = extra.pop(k)
        obj: dict[str, Any] = {"type": "error"}
        if cmd_id:
            obj["id"] = cmd_id
        obj.update(extra)
        obj["msg"] = msg
        self._reply(conn, obj)

    def _command(self, conn: Conn, raw: str) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:
            self._error(conn, None, 1)
            return
        if not isinstance(obj, dict):
            self._error(conn, None, 1)
            return
        cmd_id = obj.get("id")
        if cmd_id is not None and (not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or cmd_id < 0):
            self._error(conn, None, 1)
            return
        now = time.monotonic()
        conn.cmd_times.append(now)
        while conn.cmd_times and conn.cmd_times[0] < now - 1.0:
            conn.cmd_times.popleft()
        if len(conn.cmd_times) > self.max_commands_per_second:
            self._error(conn, cmd_id, 27)
            return
        cmd = obj.get("cmd")
        if not isinstance(cmd, str):
            self._error(conn, cmd_id, 1 if cmd is not None else 5)
            return
        if cmd == "list_subscriptions":
            self._reply(conn, {"id": cmd_id, "type": "ok", "msg": [
                {"channel": s.channel, "sid": s.sid} for s in sorted(conn.subs.values(), key=lambda s: s.sid)]})
            return
        if cmd not in ("subscribe", "unsubscribe", "update_subscription"):
            self._error(conn, cmd_id, 5)
            return
        params = obj.get("params")
        if params is None:
            self._error(conn, cmd_id, 2)
            return
        if not isinstance(params, dict):
            self._error(conn, cmd_id, 1)
            return
        try:
            if cmd == "subscribe":
                self._subscribe(conn, cmd_id, params)
            elif cmd == "unsubscribe":
                self._unsubscribe(conn, cmd_id, params)
            else:
                self._update(conn, cmd_id, params)
        except _Stop:
            pass
        except Exception as exc:  # a simulator bug must not kill the session; tests check sim.errors
            log.exception("simulator failed on command %s", cmd)
            self.errors.append(f"command {cmd}: {type(exc).__name__}: {exc}")
            self._error(conn, cmd_id, 1)

    def _tickers_param(self, conn: Conn, cmd_id: int | None, params: dict[str, Any], *,
                       allow_single: bool = True, allow_ids: bool = False) -> list[str] | None:
        one = params.get("market_ticker")
        many = params.get("market_tickers")
        ids = params.get("market_ids") if allow_ids else None
        one_id = params.get("market_id") if allow_ids else None
        given = [x for x in (one, many, ids, one_id) if x is not None]
        if not given:
            return None
        if len(given) > 1 or (one is not None and not allow_single):
            self._error(conn, cmd_id, 11)
            raise _Stop
        if one is not None or one_id is not None:
            val = one if one is not None else one_id
            if not isinstance(val, str) or not val:
                self._error(conn, cmd_id, 1)
                raise _Stop
            values = [val]
        else:
            val = many if many is not None else ids
            if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
                self._error(conn, cmd_id, 1)
                raise _Stop
            if not val:
                return None
            values = list(dict.fromkeys(val))
        if ids is not None or one_id is not None:
            for v in values:
                try:
                    uuid.UUID(v)
                except ValueError:
                    self._error(conn, cmd_id, 11)
                    raise _Stop from None
            by_id = {mk.market_id: t for t, mk in self.model.markets.items()}
            values = [by_id.get(v, v) for v in values]
        if self.unknown_market_error:
            unknown = [t for t in values if t not in self.model.markets]
            if unknown:
                self._error(conn, cmd_id, 16, market_tickers=unknown)
                raise _Stop
        return values

    def _subscribe(self, conn: Conn, cmd_id: int | None, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if channels is None or channels == []:
            self._error(conn, cmd_id, 3)
            return
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            self._error(conn, cmd_id, 1)
            return
        for ch in channels:
            if ch not in m.CHANNELS:
                self._error(conn, cmd_id, 8)
                return
            if ch in ENTITLED_CHANNELS and not self.entitled:
                self._error(conn, cmd_id, 9)
                return
        allow_ids = channels == ["ticker"]
        tickers = self._tickers_param(conn, cmd_id, params, allow_ids=allow_ids)
        if "orderbook_delta" in channels and tickers is None:
            self._error(conn, cmd_id, 14)
            return
        if tickers is not None and len(tickers) > self.max_markets_per_subscription:
            self._error(conn, cmd_id, 26, market_tickers=tickers[self.max_markets_per_subscription:])
            return
        shard_factor = params.get("shard_factor")
        shard_key = params.get("shard_key")
        if "communications" in channels:
            if shard_key is not None and shard_factor is None:
                self._error(conn, cmd_id, 20)
                return
            if shard_factor is not None:
                if not isinstance(shard_factor, int) or shard_factor <= 0:
                    self._error(conn, cmd_id, 19)
                    return
                if shard_factor > 100:
                    self._error(conn, cmd_id, 22)
                    return
                if not isinstance(shard_key, int) or not 0 <= shard_key < shard_factor:
                    self._error(conn, cmd_id, 21)
                    return
        for ch in dict.fromkeys(channels):
            filtered = tickers if ch in MARKET_FILTER_CHANNELS else None
            existing = conn.by_channel.get(ch)
            if existing is not None:
                added: list[str] = []
                if existing.tickers is not None:
                    if filtered is None:
                        existing.set_tickers(None)
                    else:
                        added = [t for t in filtered if t not in existing._set]
                        if len(existing.tickers) + len(added) > self.max_markets_per_subscription:
                            self._error(conn, cmd_id, 26, sid=existing.sid, market_tickers=added)
                            continue
                        existing.set_tickers(existing.tickers + added)
                self._reply(conn, {"id": cmd_id, "type": "subscribed",
                                   "msg": {"channel": ch, "sid": existing.sid}})
                self._initial(conn, existing, added, params)
                continue
            sub = Sub(sid=conn.next_sid, channel=ch, tickers=list(filtered) if filtered is not None else None,
                      use_yes_price=bool(params.get("use_yes_price", False)),
                      skip_ticker_ack=bool(params.get("skip_ticker_ack", False)),
                      user_filter=str(params.get("user_filter") or ""),
                      shard_factor=shard_factor or 0, shard_key=shard_key or 0,
                      by_ids=ch == "ticker" and (params.get("market_ids") is not None
                                                 or params.get("market_id") is not None))
            conn.next_sid += 1
            conn.subs[sub.sid] = sub
            conn.by_channel[ch] = sub
            self._reply(conn, {"id": cmd_id, "type": "subscribed", "msg": {"channel": ch, "sid": sub.sid}})
            self._initial(conn, sub, sub.tickers, params)

    def _initial(self, conn: Conn, sub: Sub, tickers: list[str] | None, params: dict[str, Any],
                 cmd_id: int | None = None) -> None:
        if sub.channel == "orderbook_delta":
            for t in tickers or []:
                self._snapshot(conn, sub, t, cmd_id)
        elif sub.channel == "ticker" and params.get("send_initial_snapshot"):
            for t in (tickers if tickers is not None else self.tickers):
                if t in self.model.markets:
                    self._put_frame(conn, sub, m.Ticker(sid=sub.sid, msg=self.model.ticker_payload(t)))

    def _snapshot(self, conn: Conn, sub: Sub, ticker: str, cmd_id: int | None = None) -> None:
        if ticker not in self.model.markets:
            return
        plain, yes_priced = self.model.snapshot_payloads(ticker)
        extra = {"id": cmd_id} if cmd_id else {}
        self._put_seq(conn, sub, m.OrderbookSnapshot, yes_priced if sub.use_yes_price else plain, **extra)

    def _unsubscribe(self, conn: Conn, cmd_id: int | None, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if sids is None or sids == []:
            self._error(conn, cmd_id, 4)
            return
        if not isinstance(sids, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sids):
            self._error(conn, cmd_id, 1)
            return
        for sid in sids:
            sub = conn.subs.pop(sid, None)
            if sub is None:
                self._error(conn, cmd_id, 7, sid=sid)
                continue
            conn.by_channel.pop(sub.channel, None)
            if sub.held is not None:
                conn.put(*sub.held)
                sub.held = None
            obj: dict[str, Any] = {"id": cmd_id, "sid": sid, "seq": self._current_seq(conn, sub),
                                   "type": "unsubscribed"}
            self._reply(conn, obj)

    def _update(self, conn: Conn, cmd_id: int | None, params: dict[str, Any]) -> None:
        sid = params.get("sid")
        sids = params.get("sids")
        if (sid is None) == (sids is None) or (sids is not None and (not isinstance(sids, list) or len(sids) != 1)):
            self._error(conn, cmd_id, 12)
            return
        if sids is not None:
            sid = sids[0]
        if not isinstance(sid, int) or isinstance(sid, bool):
            self._error(conn, cmd_id, 1)
            return
        action = params.get("action")
        if action is None or action == "":
            self._error(conn, cmd_id, 15)
            return
        sub = conn.subs.get(sid)
        if sub is None:
            self._error(conn, cmd_id, 7, sid=sid)
            return
        if action == "get_snapshot":
            if sub.channel != "orderbook_delta":
                self._error(conn, cmd_id, 13, sid=sid)
                return
            tickers = params.get("market_tickers")
            if params.get("market_ticker") is not None or params.get("market_ids") is not None:
                self._error(conn, cmd_id, 11, sid=sid)
                return
            if not tickers:
                self._error(conn, cmd_id, 14, sid=sid)
                return
            if not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers):
                self._error(conn, cmd_id, 1)
                return
            for t in tickers:
                self._snapshot(conn, sub, t, cmd_id)
            return
        if action not in ("add_markets", "delete_markets") or sub.channel not in MARKET_FILTER_CHANNELS:
            self._error(conn, cmd_id, 13, sid=sid)
            return
        tickers = self._tickers_param(conn, cmd_id, params, allow_ids=sub.channel == "ticker")
        if tickers is None:
            self._error(conn, cmd_id, 14, sid=sid)
            return
        added: list[str] = []
        if action == "add_markets":
            if sub.tickers is not None:
                added = [t for t in tickers if t not in sub._set]
                if len(sub.tickers) + len(added) > self.max_markets_per_subscription:
                    self._error(conn, cmd_id, 26, sid=sid, market_tickers=added)
                    return
                sub.set_tickers(sub.tickers + added)
        else:
            if sub.tickers is not None:
                gone = set(tickers)
                sub.set_tickers([t for t in sub.tickers if t not in gone])
        obj: dict[str, Any] = {"id": cmd_id, "sid": sid}
        if sub.sequenced:
            obj["seq"] = self._next_seq(conn, sub) if self.ok_consumes_seq else self._current_seq(conn, sub)
        obj["type"] = "ok"
        if sub.skip_ticker_ack or sub.tickers is None:
            obj["msg"] = {}
        elif sub.by_ids:
            markets = self.model.markets
            obj["msg"] = {"market_ids": [markets[t].market_id if t in markets else t for t in sub.tickers]}
        else:
            obj["msg"] = {"market_tickers": list(sub.tickers)}
        self._reply(conn, obj)
        if action == "add_markets":
            self._initial(conn, sub, added, params)

    # ------------------------------------------------------------------ faults

    def inject(self, fault: str, *, conn: int | str = "all", channel: str | None = None, sid: int | None = None,
               count: int = 1, **params: Any) -> None:
        """Inject a fault (see :mod:`kalshi_ws.simulator.faults` for the kinds).

        ``conn``: a connection number, ``"all"`` (every open connection) or ``"next"`` (armed on the next
        connection when it opens). ``channel``/``sid`` restrict sequenced faults; ``count`` repeats armed
        faults. Extra ``params``: ``duration`` (stall), ``mode`` (close: abort|close; auth_reject: 401|403;
        legacy: ticker|ticker_v2), ``code`` (sub_error: 10|25), ``size`` (oversized).
        """
        if fault not in KINDS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(sorted(KINDS))}")
        if fault in HANDSHAKE:
            mode = str(params.get("mode", self.auth_failure_status))
            self._auth_rejects.extend([mode] * count)
            return
        if conn == "next":
            self._next_faults.append(ArmedFault(fault, channel, sid, count, params))
            return
        if conn == "all":
            targets = list(self.connections.values())
        elif int(conn) in self.connections:
            targets = [self.connections[int(conn)]]
        else:
            raise ValueError(f"no open connection {conn!r} (open: {sorted(self.connections)})")
        for c in targets:
            if fault in ARMED:
                c.armed.append(ArmedFault(fault, channel, sid, count, dict(params)))
            else:
                for _ in range(count):
                    self._immediate(c, fault, sid=sid, channel=channel, **params)

    def _pick_sub(self, conn: Conn, sid: int | None, channel: str | None, sequenced: bool | None = None) -> Sub | None:
        if sid is not None:
            return conn.subs.get(sid)
        if channel is not None:
            return conn.by_channel.get(channel)
        for s in sorted(conn.subs.values(), key=lambda s: s.sid):
            if sequenced is None or s.sequenced == sequenced:
                return s
        return None

    def _immediate(self, conn: Conn, kind: str, *, sid: int | None = None, channel: str | None = None,
                   **params: Any) -> None:
        now = time.monotonic()
        if kind in ("stall", "stall_all"):
            duration = float(params.get("duration", 5.0))
            conn.stalled_until = now + duration
            if kind == "stall_all":
                conn.pings_stalled_until = now + duration
            self._record(kind, conn.id, duration=duration)
            conn.wake.set()
            return
        if kind == "close":
            mode = params.get("mode", "abort")
            self._record(kind, conn.id, mode=mode)
            conn.queue.clear()
            if mode == "close":
                asyncio.get_running_loop().create_task(conn.ws.close(1011, "simulated failure"))
            else:
                conn.ws.transport.abort()
            return
        sub = self._pick_sub(conn, sid, channel)
        s_id = sub.sid if sub is not None else 1  # the frame needs some sid; the record says None
        rec_sid = sub.sid if sub is not None else None
        if kind == "malformed":
            self._record(kind, conn.id, sid=rec_sid)
            conn.put("malformed", b'{"type":"orderbook_delta","sid":%d,"seq":' % s_id)
        elif kind == "unknown_type":
            self._record(kind, conn.id, sid=rec_sid)
            conn.put("sim_unknown", b'{"type":"sim_unknown_event","sid":%d,"msg":{"note":"injected"}}' % s_id)
        elif kind == "legacy":
            mode = params.get("mode", "ticker")
            t = (sub.tickers[0] if sub is not None and sub.tickers else self.tickers[0]) if self.tickers else "X"
            self._record(kind, conn.id, sid=rec_sid, mode=mode)
            if mode == "ticker_v2":
                obj: dict[str, Any] = {"type": "ticker_v2", "sid": s_id, "msg": {
                    "market_ticker": t, "market_id": self.model.markets[t].market_id if t in self.model.markets else "",
                    "price": 43, "volume_delta": 75, "ts": int(time.time())}}
            else:
                obj = {"type": "ticker", "sid": s_id, "msg": {
                    "market_ticker": t, "price": 43, "yes_bid": 42, "yes_ask": 44, "volume": 100,
                    "open_interest": 50, "ts": int(time.time())}}
            conn.put("legacy", json.dumps(obj).encode())
        elif kind == "oversized":
            size = int(params.get("size", 2 * 1024 * 1024))
            self._record(kind, conn.id, sid=rec_sid, size=size)
            head = b'{"type":"sim_padding","sid":%d,"msg":{"pad":"' % s_id
            conn.put("oversized", head + b"x" * max(0, size - len(head) - 3) + b'"}}')
        elif kind == "extra_key":
            obj = json.loads(m.encode(m.Ticker(sid=s_id, msg=self.model.ticker_payload(self.tickers[0]))))
            obj["msg"]["Clock"] = 123456789
            self._record(kind, conn.id, sid=rec_sid)
            conn.put("ticker", json.dumps(obj).encode())
        elif kind == "poison":
            ticker_sub = conn.by_channel.get("ticker")
            if ticker_sub is None or not self.tickers:
                return
            obj = json.loads(m.encode(m.Ticker(sid=ticker_sub.sid, msg=self.model.ticker_payload(self.tickers[0]))))
            obj["msg"]["market_id"] = "poison\u0000" + str(obj["msg"].get("market_id", ""))
            self._record(kind, conn.id, sid=ticker_sub.sid)
            conn.put("sim_poison", json.dumps(obj).encode())  # the NUL travels as the JSON escape \u0000
        elif kind == "zero_delta":
            ob = conn.by_channel.get("orderbook_delta")
            if ob is None or not ob.tickers:
                return
            t = ob.tickers[0]
            mk = self.model.markets[t]
            side = "yes" if mk.yes else "no"
            price = mk.best(side) or Decimal("0.5000")
            if ob.use_yes_price and side == "no":
                price = (1 - price).quantize(Decimal("0.0001"))
            ts = self.model.now_ms()
            payload = m.OrderbookDeltaPayload(market_ticker=t, market_id=mk.market_id, price_dollars=price,
                                              delta_fp=Decimal("0.00"), side=side, ts_ms=ts)  # type: ignore[arg-type]
            self._put_seq(conn, ob, m.OrderbookDelta, payload)
            self._record(kind, conn.id, sid=ob.sid, seq=ob.seq, channel="orderbook_delta")
        elif kind == "sub_error":
            code = int(params.get("code", 25))
            if sub is None:
                return
            conn.subs.pop(sub.sid, None)
            conn.by_channel.pop(sub.channel, None)
            err: dict[str, Any] = {"type": "error", "sid": sub.sid}
            if sub.sequenced:
                err["seq"] = self._current_seq(conn, sub)
            err["msg"] = {"code": code, "msg": ERROR_TEXT.get(code, "error")}
            self._record(kind, conn.id, sid=sub.sid, seq=sub.seq, channel=sub.channel, code=code,
                         reason=params.get("reason", "injected"))
            self._reply(conn, err)

    def start_random_faults(self, rate: float, *, seed: int = 0, kinds: Sequence[str] | None = None) -> None:
        """Inject seeded random faults at ``rate`` per second (Poisson) on every connection (soak tests)."""
        kinds = list(kinds or ["drop", "duplicate", "reorder", "numbers", "unknown_type", "malformed", "legacy",
                               "stall", "close", "sub_error"])
        rng = random.Random(seed)

        async def run() -> None:
            while True:
                await asyncio.sleep(rng.expovariate(rate))
                kind = rng.choice(kinds)
                params: dict[str, Any] = {}
                if kind == "stall":
                    params["duration"] = rng.uniform(0.5, 3.0)
                if kind == "sub_error":
                    params["code"] = rng.choice([10, 25])
                self.inject(kind, conn="all", **params)

        self.stop_random_faults()
        self._random_task = asyncio.get_running_loop().create_task(run())

    def stop_random_faults(self) -> None:
        if self._random_task is not None:
            self._random_task.cancel()
            self._random_task = None

    # ------------------------------------------------------------------ control endpoint

    def _control(self, connection: ServerConnection, path: str, query: str) -> Response:
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if path == "/_sim/inject":
                kind = q.pop("fault", q.pop("kind", ""))
                self._control_inject(kind, q)
                return _json(connection, 200, {"ok": True})
            if path == "/_sim/faults":
                kinds = [k for k in q if k in KINDS]
                if kinds:  # shorthand: /_sim/faults?drop=1&conn=all
                    for kind in kinds:
                        params = {k: v for k, v in q.items() if k not in KINDS}
                        params["count"] = q[kind]
                        self._control_inject(kind, params)
                    return _json(connection, 200, {"ok": True})
                return _json(connection, 200, {"faults": self.faults_injected})
            if path == "/_sim/pause":
                self._running.clear()
                return _json(connection, 200, {"ok": True})
            if path == "/_sim/resume":
                self._running.set()
                return _json(connection, 200, {"ok": True})
            if path == "/_sim/open_market":
                return _json(connection, 200, {"ticker": self.open_market(q.get("series"))})
            if path == "/_sim/close_market":
                self.close_market(q["ticker"])
                return _json(connection, 200, {"ok": True})
            if path == "/_sim/state":
                return _json(connection, 200, {
                    "produced": self.produced, "trades": len(self.model.tape), "tickers": self.tickers,
                    "connections": {str(c.id): {"key_id": c.key_id, "sent": dict(c.sent),
                                                "subscriptions": {str(s.sid): s.channel for s in c.subs.values()}}
                                    for c in self.connections.values()}})
            if path == "/_sim/trades":
                return _json(connection, 200, {"trades": self.trade_tape(q.get("ticker"))})
            if path == "/_sim/book":
                t = q["ticker"]
                book = self.book_at(t, int(q["ts_ms"])) if "ts_ms" in q else self.book(t)
                return _json(connection, 200, {"orderbook_fp": book})
        except (KeyError, ValueError) as exc:
            return _json(connection, 400, {"error": str(exc)})
        return _json(connection, 404, {"error": "unknown control path"})

    def _control_inject(self, kind: str, q: dict[str, str]) -> None:
        conn: int | str = q.pop("conn", "all")
        if isinstance(conn, str) and conn.isdigit():
            conn = int(conn)
        sid = int(q.pop("sid")) if "sid" in q else None
        channel = q.pop("channel", None)
        count = int(q.pop("count", "1"))
        params: dict[str, Any] = {}
        for k, v in q.items():
            params[k] = float(v) if k == "duration" else (int(v) if k in ("code", "size") else v)
        self.inject(kind, conn=conn, channel=channel, sid=sid, count=count, **params)

    # ------------------------------------------------------------------ REST

    def _take_token(self) -> bool:
        if not self.rest_rate_limit:
            return True
        tokens, last = self._bucket
        now = time.monotonic()
        tokens = min(self.rest_rate_limit, tokens + (now - last) * self.rest_rate_limit)
        if tokens < 1:
            self._bucket = (tokens, now)
            return False
        self._bucket = (tokens - 1, now)
        return True

    def _rest(self, connection: ServerConnection, request: Request, path: str, query: str) -> Response:
        if self.rest_auth != "off":
            has = "KALSHI-ACCESS-KEY" in request.headers
            if self.rest_auth == "required" or has:
                details = self._check_auth(request.headers, "GET", path)
                if details is not None:
                    return _json_response(connection, 401, (_AUTH_BODY % details).encode())
        if not self._take_token():
            return _json_response(connection, 429, b'{"error":"too many requests"}')
        q = parse_qs(query)
        sub = path[len(REST_PREFIX):]
        parts = [unquote(p) for p in sub.strip("/").split("/")]
        try:
            if parts == ["markets"]:
                return _json(connection, 200, self._rest_markets(q))
            if parts == ["markets", "trades"]:
                return _json(connection, 200, self._rest_trades(q))
            if parts == ["portfolio", "fills"]:
                return _json(connection, 200, self._rest_fills(q))
            if parts == ["markets", "orderbooks"]:
                tickers = [t for v in q.get("tickers", []) for t in v.split(",") if t]
                if not 1 <= len(tickers) <= 100:
                    return _bad(connection, "tickers must list 1-100 markets")
                return _json(connection, 200, {"orderbooks": [
                    {"ticker": t, "orderbook_fp": self.model.book(t)} for t in tickers if t in self.model.markets]})
            if len(parts) == 2 and parts[0] == "markets":
                mk = self.model.markets.get(parts[1])
                if mk is None:
                    return _not_found(connection)
                return _json(connection, 200, {"market": market_json(mk, self.model)})
            if len(parts) == 3 and parts[0] == "markets" and parts[2] == "orderbook":
                if parts[1] not in self.model.markets:
                    return _not_found(connection)
                depth = _int(q, "depth", 0)
                if not 0 <= depth <= 100:
                    return _bad(connection, "depth must be 0-100")
                return _json(connection, 200, {"orderbook_fp": self.model.book(parts[1], depth)})
            if parts == ["events"]:
                return _json(connection, 200, self._rest_events(q))
            if len(parts) == 2 and parts[0] == "events":
                ev = self.model.events.get(parts[1])
                if ev is None:
                    return _not_found(connection)
                return _json(connection, 200, {"event": self._event_json(ev), "markets": [
                    market_json(mk, self.model) for mk in self.model.markets.values()
                    if mk.event_ticker == ev.event_ticker]})
            if parts == ["exchange", "status"]:
                return _json(connection, 200, {
                    "exchange_active": True, "trading_active": self._running.is_set(),
                    "intra_exchange_transfers_active": True, "exchange_estimated_resume_time": None,
                    "exchange_index_statuses": [
                        {"exchange_index": i, "description": d, "exchange_active": True,
                         "trading_active": self._running.is_set(), "intra_exchange_transfers_active": True}
                        for i, d in ((0, "default"), (1, "combos"))]})
            if parts == ["historical", "cutoff"]:
                cut = self.model.start_ms - 90 * 86400 * 1000
                from .model import rfc3339
                return _json(connection, 200, {k: rfc3339(cut) for k in (
                    "market_settled_ts", "trades_created_ts", "orders_updated_ts",
                    "market_positions_last_updated_ts")})
            if parts == ["historical", "trades"]:
                return _json(connection, 200, {"trades": [], "cursor": ""})
        except ValueError as exc:
            return _bad(connection, str(exc))
        return _not_found(connection)

    def _rest_markets(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int(q, "limit", 100)
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1-1000")
        start = _cursor(q)
        status = _str(q, "status")
        if status and status not in ("unopened", "open", "paused", "closed", "settled"):
            raise ValueError(f"invalid status {status!r}")
        event = _str(q, "event_ticker")
        series = _str(q, "series_ticker")
        tickers = {t for v in q.get("tickers", []) for t in v.split(",") if t}
        mve = _str(q, "mve_filter")
        rows = []
        for mk in self.model.markets.values():
            if event and mk.event_ticker != event:
                continue
            if series and mk.series_ticker != series:
                continue
            if tickers and mk.ticker not in tickers:
                continue
            if status and not status_filter_matches(mk, status):
                continue
            if (mve == "exclude" and mk.mve) or (mve == "only" and not mk.mve):
                continue
            rows.append(mk)
        page = rows[start:start + limit]
        nxt = start + limit
        return {"markets": [market_json(mk, self.model) for mk in page],
                "cursor": _encode_cursor(nxt) if nxt < len(rows) else ""}

    def _event_json(self, ev: Any) -> dict[str, Any]:
        return {"event_ticker": ev.event_ticker, "series_ticker": ev.series_ticker, "title": ev.title,
                "sub_title": "simulated", "collateral_return_type": "", "mutually_exclusive": False,
                "strike_date": None, "available_on_brokers": False}

    def _rest_events(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int(q, "limit", 200)
        if not 1 <= limit <= 200:
            raise ValueError("limit must be 1-200")
        start = _cursor(q)
        series = _str(q, "series_ticker")
        nested = _str(q, "with_nested_markets") == "true"
        rows = [ev for ev in self.model.events.values() if not ev.mve and (not series or ev.series_ticker == series)]
        out = []
        for ev in rows[start:start + limit]:
            j = self._event_json(ev)
            if nested:
                j["markets"] = [market_json(mk, self.model) for mk in self.model.markets.values()
                                if mk.event_ticker == ev.event_ticker]
            out.append(j)
        nxt = start + limit
        return {"events": out, "cursor": _encode_cursor(nxt) if nxt < len(rows) else ""}

    def _rest_trades(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = _int(q, "limit", 100)
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1-1000")
        ticker = _str(q, "ticker")
        min_ts = _int(q, "min_ts", None)
        max_ts = _int(q, "max_ts", None)
        block = _str(q, "is_block_trade")
        tape = self.model.tape
        # cursor = index (exclusive) into the append-only tape, walking newest -> oldest
        end = _cursor(q, default=len(tape)) if _str(q, "cursor") else len(tape)
        indices = self.model.tape_index.get(ticker, []) if ticker else None
        out: list[dict[str, Any]] = []
        hi_ms = (max_ts + 1) * 1000 - 1 if max_ts is not None else None
        cands: Iterator[int]
        if indices is not None:
            k = bisect.bisect_left(indices, end)
            if hi_ms is not None:
                k = min(k, bisect.bisect_right(indices, hi_ms, key=lambda j: tape[j]["ts_ms"]))
            cands = (indices[j] for j in range(k - 1, -1, -1))
        else:
            if hi_ms is not None:
                end = min(end, bisect.bisect_right(tape, hi_ms, key=lambda t: t["ts_ms"]))
            cands = iter(range(end - 1, -1, -1))
        last = None
        for i in cands:
            t = tape[i]
            sec = t["ts_ms"] // 1000
            if max_ts is not None and sec > max_ts:
                continue
            if min_ts is not None and sec < min_ts:
                break  # tape is time-ordered
            if block and str(t["is_block_trade"]).lower() != block:
                continue
            out.append({k: v for k, v in t.items() if k != "ts_ms"})
            last = i
            if len(out) >= limit:
                break
        pos = last if last is not None else 0
        more = len(out) >= limit and pos > 0
        return {"trades": out, "cursor": _encode_cursor(pos) if more else ""}

    def _rest_fills(self, q: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /portfolio/fills``: the simulated account's fills (the records the WS ``fill`` frames come
        from), newest first; ``min_ts``/``max_ts`` inclusive whole seconds; cursor = index into the list."""
        limit = _int(q, "limit", 100)
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1-1000")
        ticker = _str(q, "ticker")
        order_id = _str(q, "order_id")
        min_ts = _int(q, "min_ts", None)
        max_ts = _int(q, "max_ts", None)
        fills = self.model.fills
        end = _cursor(q, default=len(fills)) if _str(q, "cursor") else len(fills)
        out: list[dict[str, Any]] = []
        last = None
        for i in range(min(end, len(fills)) - 1, -1, -1):
            f = fills[i]
            sec = f["ts_ms"] // 1000
            if max_ts is not None and sec > max_ts:
                continue
            if min_ts is not None and sec < min_ts:
                break  # fills are time-ordered
            if (ticker and f["ticker"] != ticker) or (order_id and f["order_id"] != order_id):
                continue
            out.append({k: v for k, v in f.items() if k != "ts_ms"})
            last = i
            if len(out) >= limit:
                break
        more = len(out) >= limit and last is not None and last > 0
        return {"fills": out, "cursor": _encode_cursor(last) if more and last is not None else ""}


# ---------------------------------------------------------------------- helpers

_PROCESS_KEY: tuple[Path, str, Path, Path] | None = None


def _process_key() -> tuple[Path, str, Path, Path]:
    """(dir, key_id, private, public): generated once per process, removed at exit."""
    global _PROCESS_KEY
    if _PROCESS_KEY is None:
        folder = Path(tempfile.mkdtemp(prefix="kalshi-sim-"))
        atexit.register(shutil.rmtree, folder, True)
        key_id, priv, pub = generate_key_pair(folder / "keys")
        _PROCESS_KEY = (folder, key_id, priv, pub)
    return _PROCESS_KEY


def _json_response(connection: ServerConnection, status: int, body: bytes) -> Response:
    st = http.HTTPStatus(status)
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
    ])
    return Response(st.value, st.phrase, headers, body)


def _json(connection: ServerConnection, status: int, obj: Any) -> Response:
    return _json_response(connection, status, json.dumps(obj, separators=(",", ":")).encode())


def _bad(connection: ServerConnection, message: str) -> Response:
    return _json(connection, 400, {"error": {"code": "bad_request", "message": message, "details": message}})


def _not_found(connection: ServerConnection) -> Response:
    return _json(connection, 404, {"error": {"code": "not_found", "message": "not found", "details": "not found"}})


def _str(q: dict[str, list[str]], key: str) -> str:
    v = q.get(key)
    return v[-1] if v else ""


def _int(q: dict[str, list[str]], key: str, default: Any) -> Any:
    v = _str(q, key)
    if v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{key} must be an integer") from None


def _encode_cursor(pos: int) -> str:
    return base64.urlsafe_b64encode(f"p{pos}".encode()).decode()


def _cursor(q: dict[str, list[str]], default: int = 0) -> int:
    c = _str(q, "cursor")
    if not c:
        return default
    try:
        raw = base64.urlsafe_b64decode(c.encode()).decode()
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
