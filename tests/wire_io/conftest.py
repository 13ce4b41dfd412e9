"""Real-socket fakes of Kalshi's endpoints for the client and REST tests (127.0.0.1, port 0).

``FakeExchange`` is one websockets server that answers both the WebSocket upgrade on ``/trade-api/ws/v2``
(verifying the RSA-PSS signature like the exchange) and plain REST GETs (through ``process_request``).
Each test scripts it: a REST route table, and a per-connection ``script`` coroutine for the socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kalshi_testing import wait_until
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kalshi_ws.auth import WS_PATH, Signer, generate_key_pair, load_public_key, verify_signature
from kalshi_ws.events import SessionEvent
from kalshi_ws.messages import AnyMessage


@dataclass(frozen=True)
class Keys:
    signer: Signer
    public_key: rsa.RSAPublicKey


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    key_id, private_path, public_path = generate_key_pair(tmp_path_factory.mktemp("keys"))
    return Keys(Signer.from_file(key_id, private_path), load_public_key(Path(public_path).read_bytes()))


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    signature_ok: bool


RestHandler = Callable[[SeenRequest], "tuple[int, Any] | tuple[int, Any, dict[str, str]]"]
WsScript = Callable[["WsPeer"], Awaitable[None]]


@dataclass
class WsPeer:
    """The server side of one accepted WebSocket connection, as a test script sees it."""

    ws: ServerConnection
    number: int
    request: SeenRequest
    commands: list[dict[str, Any]] = field(default_factory=list)

    async def command(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        cmd: dict[str, Any] = msgspec.json.decode(raw)
        self.commands.append(cmd)
        return cmd

    async def answer_subscribes(self, count: int, first_sid: int = 1) -> list[int]:
        """Read ``count`` subscribe commands and acknowledge each channel with a fresh sid."""
        sids = []
        sid = first_sid
        for _ in range(count):
            cmd = await self.command()
            assert cmd["cmd"] == "subscribe", cmd
            for channel in cmd["params"]["channels"]:
                await self.send({"type": "subscribed", "id": cmd["id"], "msg": {"channel": channel, "sid": sid}})
                sids.append(sid)
                sid += 1
        return sids

    async def send(self, obj: Any) -> None:
        await self.ws.send(msgspec.json.encode(obj).decode())


def trade_frame(sid: int, seq: int, n: int, ticker: str = "KXTEST-1") -> dict[str, Any]:
    return {"type": "trade", "sid": sid, "seq": seq,
            "msg": {"trade_id": f"t-{n}", "market_ticker": ticker, "yes_price_dollars": "0.4200",
                    "no_price_dollars": "0.5800", "count_fp": "3.00", "taker_outcome_side": "yes",
                    "taker_book_side": "bid", "ts_ms": 1795184999874 + n}}


class FakeExchange:
    """A scripted Kalshi stand-in on 127.0.0.1:<free port>."""

    def __init__(self, public_key: rsa.RSAPublicKey | None) -> None:
        self.public_key = public_key
        self.routes: dict[str, RestHandler] = {}
        self.rest_requests: list[SeenRequest] = []
        self.upgrades: list[SeenRequest] = []
        #: Answer the n-th upgrade (0-based) with this HTTP status instead of 101 (``None``: accept).
        self.reject: Callable[[int], tuple[int, str] | None] = lambda n: None
        self.script: WsScript = _idle
        self.peers: list[WsPeer] = []
        self.server: Server | None = None
        self.port = 0
        self.script_errors: list[BaseException] = []
        self._seen_connection = asyncio.Event()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/trade-api/v2"

    def _seen(self, request: Request) -> SeenRequest:
        parts = urlsplit(request.path)
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        ok = False
        if self.public_key is not None and "kalshi-access-signature" in headers:
            ok = verify_signature(self.public_key, headers.get("kalshi-access-timestamp", ""), "GET", parts.path,
                                  headers["kalshi-access-signature"])
        return SeenRequest(parts.path, parse_qs(parts.query), headers, ok)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        seen = self._seen(request)
        if seen.path == WS_PATH:
            number = len(self.upgrades)
            self.upgrades.append(seen)
            rejected = self.reject(number)
            if rejected is not None:
                return _response(rejected[0], rejected[1])
            if self.public_key is not None and not seen.signature_ok:
                return _response(401, '{"error":{"code":"authentication_error","message":"bad signature"}}')
            return None
        self.rest_requests.append(seen)
        handler = self.routes.get(seen.path)
        if handler is None:
            return _response(404, '{"code":"not_found","message":"no such route"}')
        result = handler(seen)
        status, body = result[0], result[1]
        extra = result[2] if len(result) > 2 else {}
        text = body if isinstance(body, str) else msgspec.json.encode(body).decode()
        response = _response(status, text)
        for key, value in extra.items():
            response.headers[key] = value
        return response

    async def _handler(self, ws: ServerConnection) -> None:
        peer = WsPeer(ws, len(self.peers) + 1, self.upgrades[-1])
        self.peers.append(peer)
        self._seen_connection.set()
        try:
            await self.script(peer)
        except Exception as exc:  # noqa: BLE001 - a client closing mid-script is normal
            if not _is_closed(exc):
                self.script_errors.append(exc)

    async def __aenter__(self) -> FakeExchange:
        self.server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request,
                                  ping_interval=None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _is_closed(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed | TimeoutError)


def _response(status: int, body: str) -> Response:
    data = body.encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                       ("Connection", "close")])
    return Response(status, HTTPStatus(status).phrase, headers, data)


async def _idle(peer: WsPeer) -> None:
    await peer.ws.wait_closed()


@pytest.fixture
async def exchange(keys: Keys) -> Any:
    async with FakeExchange(keys.public_key) as fake:
        yield fake


class CollectingSink:
    """A MessageSink that keeps everything, in order, and lets tests wait for conditions."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any, int]] = []  # ("msg", message, generation) / ("event", event, gen)
        self._changed = asyncio.Condition()
        self._resumed = asyncio.Event()
        self._resumed.set()

    @property
    def messages(self) -> list[tuple[AnyMessage, int]]:
        return [(m, g) for kind, m, g in self.items if kind == "msg"]

    @property
    def events(self) -> list[SessionEvent]:
        return [e for kind, e, _ in self.items if kind == "event"]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def on_message(self, message: AnyMessage, generation: int, received_ns: int) -> None:
        assert received_ns <= time.time_ns()
        self.items.append(("msg", message, generation))
        self._notify()

    def on_event(self, event: SessionEvent) -> None:
        self.items.append(("event", event, event.generation))
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)


@pytest.fixture
def sink() -> CollectingSink:
    return CollectingSink()


class FakeClock:
    """The client's monotonic and wall clocks, moved only by :meth:`advance` (no test sleeps for the watchdog or
    the deadline). Reads are counted: the client's timer reads the clock on every tick (``SessionProtocol.poll``
    and the watchdog), so :meth:`ticks` waits until the client has looked at the clock again since the call."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_795_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall - start
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def ticks(self, reads: int = 4) -> None:
        """Wait until the clock was read ``reads`` more times: each tick reads it for the watchdog, then (unless the
        sink is paused) for ``SessionProtocol.poll``, so 4 reads include one whole tick that began after the call."""
        target = self.reads + reads
        await wait_until(lambda: self.reads >= target, timeout=10.0, what=f"{reads} clock reads")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
