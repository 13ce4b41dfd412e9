"""Helpers for the simulator tests: a raw websockets client that records every frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from kalshi_ws.auth import Signer
from kalshi_ws.simulator import Simulator


class Raw:
    """A plain websockets client speaking raw JSON; keeps every received frame in ``frames``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._next_id = 0
        self._pos = 0

    async def close(self) -> None:
        """Close while still reading, so the server's close frame is not stuck behind unread data."""

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in self.ws:
                    pass

        task = asyncio.create_task(drain())
        await self.ws.close()
        await task

    async def send(self, cmd: str, params: dict[str, Any] | None = None, *, id: int | None = None) -> int:
        if id is None:
            self._next_id += 1
            id = self._next_id
        obj: dict[str, Any] = {"id": id, "cmd": cmd}
        if params is not None:
            obj["params"] = params
        await self.ws.send(json.dumps(obj))
        return id

    async def _read(self, timeout: float) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str)
        self.raw.append(raw)
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = {"type": "__malformed__", "raw": raw}
        self.frames.append(frame)
        return frame

    async def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The next frame (after those already consumed by wait) satisfying ``pred``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._pos < len(self.frames):
                f = self.frames[self._pos]
                self._pos += 1
                if pred(f):
                    return f
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no matching frame")
            await self._read(left)

    async def reply(self, cmd_id: int, timeout: float = 5.0) -> dict[str, Any]:
        return await self.wait(lambda f: f.get("id") == cmd_id, timeout)

    async def collect(self, n: int, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        out = []
        while len(out) < n:
            out.append(await self.wait(pred, timeout))
        return out

    async def drain_until(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("condition not met")
            try:
                await self._read(min(left, 0.2))
            except TimeoutError:
                pass


def signer(sim: Simulator) -> Signer:
    return Signer.from_file(sim.key_id, sim.private_key_path)


async def connect(sim: Simulator, **kw: Any) -> ClientConnection:
    return await websockets.connect(sim.ws_url, additional_headers=signer(sim).websocket_headers(),
                                    max_size=None, **kw)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(markets=4, seed=7, rate=300, heartbeat_interval=0.3) as s:
        yield s
        assert s.errors == []


@pytest.fixture
async def idle_sim() -> AsyncIterator[Simulator]:
    """No automatic activity: drive it with sim.step(n)."""
    async with Simulator(markets=4, seed=3, rate=0) as s:
        yield s
        assert s.errors == []


@pytest.fixture
async def raw(sim: Simulator) -> AsyncIterator[Raw]:
    r = Raw(await connect(sim))
    try:
        yield r
    finally:
        await r.close()


@pytest.fixture
async def idle_raw(idle_sim: Simulator) -> AsyncIterator[Raw]:
    r = Raw(await connect(idle_sim))
    try:
        yield r
    finally:
        await r.close()
