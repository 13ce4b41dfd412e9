"""Hostile streams against the real client (and, for floods, the real recorder and PostgreSQL).

Each server is the scripted websockets server of ``conftest.FakeExchange`` on 127.0.0.1 (port 0); what it sends
is bounded in count and time. Memory is measured, not guessed: the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) for the flood, ``tracemalloc`` for the fragment buffer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tracemalloc
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kalshi_testing import wait_until

from kalshi_store.recorder import Recorder
from kalshi_ws import events, messages
from kalshi_ws.client import ClientOptions, KalshiWebSocketClient
from kalshi_ws.protocol import Subscription

log = logging.getLogger(__name__)

TICKER = "KXTEST-1"
FAST = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.05, close_timeout=1.0,
                     open_timeout=2.0, keepalive_interval=None, compression=False)


def _ws_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented server-to-client text frame."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    assert n < 65536
    return bytes([0x81, 126]) + n.to_bytes(2, "big") + payload


def _peak_rss_reset() -> int | None:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5) and return the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class _WatchingSink:
    """Passes everything to the recorder and notes the most rows it ever held in memory (after every row)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.max_rows_in_memory_seen = 0
        self.events: list[events.SessionEvent] = []

    def on_message(self, message: messages.AnyMessage, generation: int, received_ns: int) -> None:
        rec = self.recorder
        rec.on_message(message, generation, received_ns)
        held = rec.rows_in_memory
        if held > self.max_rows_in_memory_seen:
            self.max_rows_in_memory_seen = held

    def on_event(self, event: events.SessionEvent) -> None:
        self.events.append(event)
        self.recorder.on_event(event)

    @property
    def paused(self) -> bool:
        return self.recorder.paused

    async def wait_resumed(self) -> None:
        await self.recorder.wait_resumed()


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def _session_row(url: str, session_id: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute("select status, status_message, (select count(*) from kalshi.dead_letter d"
                           " where d.session_id = s.session_id) from kalshi.sessions s where session_id = %s",
                           (session_id,)).fetchone()
    assert row is not None
    return tuple(row)


# ------------------------------------------------------------------------------------------------------------
# Issue 11 item 4: a flood of unknown-type frames counts against the same memory bound as data rows.

FLOOD_SECONDS = 3.0
FLOOD_MAX_FRAMES = 400_000
#: An unknown message type, padded so that one socket read (asyncio reads at most 256 KiB) holds ~1 200 frames.
FLOOD_FRAME = _ws_frame(b'{"type":"x","sid":1,"pad":"' + b"." * 180 + b'"}')
FLOOD_CHUNK_FRAMES = 256
MAX_ROWS = 2000


@pytest.mark.timeout(120)
async def test_flood_of_unknown_frames_keeps_memory_bounded(exchange: Any, keys: Any, db_url: str,
                                                            tmp_path: Path) -> None:
    sent = 0
    flood_over = asyncio.Event()

    async def script(peer: Any) -> None:
        nonlocal sent
        await peer.answer_subscribes(1)
        loop = asyncio.get_running_loop()
        end = loop.time() + FLOOD_SECONDS
        chunk = FLOOD_FRAME * FLOOD_CHUNK_FRAMES
        transport = peer.ws.transport
        try:
            while loop.time() < end and sent < FLOOD_MAX_FRAMES and not transport.is_closing():
                transport.write(chunk)  # raw frames, as fast as the client's TCP window lets them through
                sent += FLOOD_CHUNK_FRAMES
                await peer.ws.drain()
        finally:
            flood_over.set()
        await peer.ws.wait_closed()

    exchange.script = script
    baseline_kb = _peak_rss_reset()
    async with Recorder(db_url, spill_dir=tmp_path / "spill", batch_rows=500,
                        max_rows_in_memory=MAX_ROWS) as recorder:
        session_id = await recorder.open_session("flood", "simulator", [TICKER], ["trade"])
        sink = _WatchingSink(recorder)
        client = KalshiWebSocketClient(exchange.ws_url, sink, [Subscription("trade", (TICKER,))],
                                       signer=keys.signer, options=FAST, rng=random.Random(7))
        task = asyncio.create_task(client.run())
        await _wait(flood_over.is_set, 60, "the flood ended")
        await _wait(lambda: recorder.stats().received.get("dead_letter", 0) >= sent or task.done(), 60,
                    "every flooded frame reached the recorder")
        client.stop()
        await task
        peak_kb = _status_kb("VmHWM")
        await recorder.close_session("completed")
        stats = recorder.stats()

    status, message, stored = _session_row(db_url, session_id)
    # one socket read of the client can hold this many frames: they are delivered even when the first paused
    per_read = 256 * 1024 // len(FLOOD_FRAME) + 1
    growth = None if baseline_kb is None else (peak_kb - baseline_kb) / 1024
    log.warning("flood: %d frames sent, %d stored, most rows in memory %d (bound %d + %d per read), "
                "paused %d times, peak RSS growth %s MiB", sent, stored, sink.max_rows_in_memory_seen, MAX_ROWS,
                per_read, stats.paused_count, "?" if growth is None else f"{growth:.1f}")
    assert sent >= 20_000, "the flood was too small to mean anything"
    assert stored == sent  # nothing lost: every frame is a dead letter
    assert sink.max_rows_in_memory_seen <= MAX_ROWS + per_read
    assert stats.paused_count >= 1
    if growth is not None:
        assert growth < 120, f"peak RSS grew by {growth:.0f} MiB"
    assert status == "degraded"
    assert "could not be decoded" in message and "dead_letter" in message


async def test_mostly_garbage_session_is_not_completed(db_url: str, tmp_path: Path) -> None:
    """No pause involved: 150 unknown frames among 50 trades make the session ``degraded``, saying why."""
    async with Recorder(db_url, spill_dir=tmp_path / "spill") as recorder:
        session_id = await recorder.open_session("garbage", "simulator", [TICKER], ["trade"])
        for i in range(200):
            if i % 4 == 0:
                frame = (b'{"type":"trade","sid":1,"seq":%d,"msg":{"trade_id":"t-%d","market_ticker":"%s",'
                         b'"yes_price_dollars":"0.4200","no_price_dollars":"0.5800","count_fp":"3.00",'
                         b'"ts_ms":1795184999874}}' % (i // 4 + 1, i, TICKER.encode()))
            else:
                frame = b'{"type":"brand_new","sid":1,"n":%d}' % i
            recorder.on_message(messages.decode(frame), 1, 1795184999874000000 + i)
        await recorder.close_session("completed")
    status, message, stored = _session_row(db_url, session_id)
    assert stored == 150
    assert status == "degraded", message
    assert "150 of 200 rows" in message


# ------------------------------------------------------------------------------------------------------------
# Issue 11 item 5: fragmented messages. Memory is bounded by max_size at about one byte per payload byte, and
# only complete messages (or heartbeats between messages) keep the watchdog quiet.


async def test_endless_fragmented_message_is_a_stale_stream(exchange: Any, sink: Any, keys: Any,
                                                            clock: Any) -> None:
    """A server that starts a message and never ends it (1-byte fragments, pings in between) delivers nothing:
    the watchdog fires and the client reconnects. On a fake clock, advanced twice with pings heard in between:
    if those pings counted as progress the silence would restart at the first advance and never reach 30 s."""
    pongs = 0

    def answered(_: Any) -> None:
        nonlocal pongs
        pongs += 1

    async def endless(peer: Any) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + 20  # bounded: the watchdog fires long before
        n = 0
        while loop.time() < end:
            yield "x"
            n += 1
            if n % 10 == 0:
                pong = await peer.ws.ping()  # heartbeats keep flowing, the message never completes
                pong.add_done_callback(answered)  # the client parsed the ping (it answers while parsing)
            await asyncio.sleep(0.001)

    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        if peer.number == 1:
            await peer.ws.send(endless(peer))
        await peer.ws.wait_closed()

    exchange.script = script
    options = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.01, close_timeout=1.0,
                            open_timeout=2.0, keepalive_interval=None)
    client = KalshiWebSocketClient(exchange.ws_url, sink, [Subscription("trade", (TICKER,))], signer=keys.signer,
                                   options=options, rng=random.Random(7), clock=clock, wall_clock=clock.wall)
    task = asyncio.create_task(client.run())
    try:
        for _ in range(2):
            seen = pongs
            await wait_until(lambda seen=seen: pongs >= seen + 3)  # pings reached the client ...
            await clock.ticks()  # ... and the watchdog looked since
            clock.advance(0.6 * options.stale_after)
        await sink.wait_for(lambda: len(sink.of(events.Connected)) >= 2, timeout=15)
    finally:
        client.stop()
        await task
    [stale] = sink.of(events.StaleStream)
    assert stale.generation == 1 and stale.silent_for >= 1.2 * options.stale_after
    assert sink.messages == []  # nothing was ever delivered


@pytest.mark.timeout(300)
async def test_huge_message_in_one_byte_fragments_is_bounded(exchange: Any, sink: Any, keys: Any) -> None:
    """1-byte fragments: an unfinished message holds about one byte of memory per payload byte (a list of small
    ``bytes`` held ~40), and past ``max_size`` the client closes with 1009 (message too big) and reconnects."""
    max_size = 256 * 1024
    chunk_frames = 16 * 1024
    # raw frames: a text frame without FIN, then continuation frames of one byte (the message never ends)
    first = bytes([0x01, 1]) + b"x"
    chunk = (bytes([0x00, 1]) + b"x") * chunk_frames
    held = asyncio.Event()
    measured = asyncio.Event()

    async def script(peer: Any) -> None:
        await peer.answer_subscribes(1)
        if peer.number == 1:
            transport = peer.ws.transport
            transport.write(first)
            for _ in range(max_size // chunk_frames - 1):  # just under the limit
                transport.write(chunk)
                await peer.ws.drain()
            # the client answers this ping after it has handled every fragment before it
            pong = await peer.ws.ping()
            await pong
            held.set()
            await measured.wait()
            for _ in range(2):  # now past the limit
                if transport.is_closing():
                    break
                transport.write(chunk)
                await peer.ws.drain()
        await peer.ws.wait_closed()

    exchange.script = script
    # The stale-stream watchdog is not under test here (fragments are not progress): on a slow machine, parsing 256 Ki
    # one-byte frames under tracemalloc can take longer than its default 30 s.
    options = ClientOptions(backoff_initial=0.01, backoff_cap=0.05, poll_interval=0.05, close_timeout=1.0,
                            open_timeout=2.0, keepalive_interval=None, compression=False, max_size=max_size,
                            stale_after=600.0)
    client = KalshiWebSocketClient(exchange.ws_url, sink, [Subscription("trade", (TICKER,))], signer=keys.signer,
                                   options=options, rng=random.Random(7))
    tracemalloc.start()
    try:
        task = asyncio.create_task(client.run())
        try:
            await sink.wait_for(lambda: bool(sink.of(events.Connected)), timeout=10)
            before = tracemalloc.get_traced_memory()[0]
            async with asyncio.timeout(240):
                await held.wait()
            retained = tracemalloc.get_traced_memory()[0] - before
            measured.set()
            await sink.wait_for(lambda: len(sink.of(events.Connected)) >= 2, timeout=60)
        finally:
            measured.set()
            client.stop()
            await task
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = max_size - chunk_frames + 1
    log.warning("an unfinished message of %d 1-byte fragments holds %.0f KiB (%.1f bytes per payload byte); "
                "traced peak %.1f MiB (websockets parses each 256 KiB socket read into frame objects at once)",
                size, retained / 1024, retained / size, peak / 2**20)
    assert retained < 3 * max_size, f"{retained / size:.1f} bytes held per payload byte"
    first_close = sink.of(events.Disconnected)[0]
    assert "1009" in first_close.reason, first_close.reason
    assert sink.messages == []
