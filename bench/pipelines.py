"""The three pipelines the benchmark compares, each run in a fresh process of its own.

* ``naive``: the original prototype's design: ``websockets`` client, ``json.loads``, one ``INSERT`` and
  one ``COMMIT`` per message into a single ``jsonb`` table.
* ``bare``: the practical limit of one Python process: ``websockets`` client, :func:`kalshi_ws.messages.decode`
  (msgspec), a row tuple per message, batches handed to a writer thread that ``COPY``s them into
  temporary staging tables and moves them with ``INSERT ... ON CONFLICT DO NOTHING``, one transaction
  per batch. No books, no sequence checks, no session bookkeeping.
* ``production``: the real path: :class:`kalshi_ws.client.KalshiWebSocketClient` (auth, decode, sequence
  tracking, books) delivering into :class:`kalshi_store.recorder.Recorder` (batching, COPY, staging,
  ON CONFLICT, session row, gap ledger).

Every stream ends with a trade whose id is known in advance; a pipeline is done when that trade is
committed. The child reports its CPU time (``time.process_time``, all threads) from just before
connecting to done, its peak RSS, and when it saw the end committed. The orchestrator (``bench.run``)
measures the rest from the source and from PostgreSQL (commit timestamps).
"""

from __future__ import annotations

import asyncio
import json
import queue
import resource
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from psycopg import sql

BARE_SCHEMA = "bench_bare"
NAIVE_SCHEMA = "bench_naive"

#: Rows per batch and the longest a row waits in the buffer (the bare pipeline's batching policy).
BATCH_ROWS = 5_000
BATCH_SECONDS = 0.05
MAX_BATCHES_IN_FLIGHT = 4

_BARE_DDL = """
create schema if not exists bench_bare;
create table if not exists bench_bare.orderbook_snapshot (
    sid int not null, seq bigint not null, market_ticker text not null, yes jsonb, no jsonb,
    received_ns bigint not null, primary key (sid, seq));
create table if not exists bench_bare.orderbook_delta (
    sid int not null, seq bigint not null, market_ticker text not null, price_dollars numeric not null,
    delta_fp numeric not null, side text not null, ts_ms bigint, received_ns bigint not null,
    primary key (sid, seq));
create table if not exists bench_bare.ticker (
    market_ticker text not null, ts_ms bigint not null, price_dollars numeric, yes_bid_dollars numeric,
    yes_ask_dollars numeric, volume_fp numeric, open_interest_fp numeric, yes_bid_size_fp numeric,
    yes_ask_size_fp numeric, last_trade_size_fp numeric, received_ns bigint not null,
    primary key (market_ticker, ts_ms));
create table if not exists bench_bare.trade (
    trade_id text primary key, market_ticker text not null, yes_price_dollars numeric not null,
    no_price_dollars numeric not null, count_fp numeric not null, taker_outcome_side text, ts_ms bigint,
    received_ns bigint not null);
"""
BARE_TABLES = ("orderbook_snapshot", "orderbook_delta", "ticker", "trade")

_NAIVE_DDL = """
create schema if not exists bench_naive;
create table if not exists bench_naive.message (
    id bigserial primary key, type text not null, sid int, seq bigint, market_ticker text, trade_id text,
    payload jsonb not null, received_ns bigint not null);
"""
NAIVE_TABLES = ("message",)


def prepare_schemas(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_BARE_DDL)
        conn.execute(_NAIVE_DDL)


def _child_stats(cpu0: float) -> dict[str, Any]:
    return {"cpu_s": time.process_time() - cpu0,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _subscribe_command(cfg: dict[str, Any]) -> str:
    return json.dumps({"id": 1, "cmd": "subscribe",
                       "params": {"channels": cfg["channels"], "market_tickers": cfg["tickers"]}})


def _connect(cfg: dict[str, Any]) -> Any:
    from websockets.asyncio.client import connect

    from kalshi_ws.auth import Signer

    signer = Signer.from_file(cfg["key_id"], cfg["private_key_path"])
    return connect(cfg["ws_url"], additional_headers=signer.websocket_headers(), max_size=None,
                   compression="deflate" if cfg.get("compress") else None, ping_interval=None)


# ---------------------------------------------------------------------------------------------------
# (b) naive


async def _naive(cfg: dict[str, Any]) -> dict[str, Any]:
    end_id = cfg["end_trade_id"]
    db = psycopg.connect(cfg["dsn"])
    insert = ("insert into bench_naive.message (type, sid, seq, market_ticker, trade_id, payload, received_ns) "
              "values (%s, %s, %s, %s, %s, %s, %s)")
    connecting = _connect(cfg)  # loads and checks the key (tens of ms): not part of the per-message cost
    cpu0 = time.process_time()
    async with connecting as ws:
        await ws.send(_subscribe_command(cfg))
        async for text in ws:
            received_ns = time.time_ns()
            obj = json.loads(text)
            kind = obj.get("type")
            if kind == "subscribed":
                continue
            payload = obj.get("msg") or {}
            db.execute(insert, (kind, obj.get("sid"), obj.get("seq"), payload.get("market_ticker"),
                                payload.get("trade_id"), json.dumps(payload), received_ns))
            db.commit()
            if kind == "trade" and payload.get("trade_id") == end_id:
                break
    done_ns = time.time_ns()
    db.close()
    return {"done_ns": done_ns, **_child_stats(cpu0)}


# ---------------------------------------------------------------------------------------------------
# (a) bare


class _BareWriter(threading.Thread):
    """COPY into temp staging tables + INSERT ... ON CONFLICT DO NOTHING, one transaction per batch."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="bare-writer", daemon=True)
        self.conn = psycopg.connect(dsn)
        #: Bounded: when the database falls behind, the reader waits (and the TCP window closes).
        self.batches: queue.Queue[dict[str, list[tuple[Any, ...]]] | None] = queue.Queue(maxsize=MAX_BATCHES_IN_FLIGHT)
        self.committed_end = threading.Event()
        self.end_seen_in: int | None = None
        self.done_ns = 0
        self.error: BaseException | None = None
        self.batches_committed = 0
        self._columns: dict[str, sql.Composable] = {}
        with self.conn.cursor() as cur:
            for table in BARE_TABLES:
                cur.execute(sql.SQL("create temp table {} (like {} ) on commit delete rows").format(
                    sql.Identifier(f"stage_{table}"), sql.Identifier(BARE_SCHEMA, table)))
                cur.execute("select column_name from information_schema.columns where table_schema = %s and "
                            "table_name = %s order by ordinal_position", (BARE_SCHEMA, table))
                self._columns[table] = sql.SQL(", ").join(sql.Identifier(r[0]) for r in cur.fetchall())
        self.conn.commit()

    def run(self) -> None:
        try:
            n = 0
            while True:
                batch = self.batches.get()
                if batch is None:
                    return
                n += 1
                with self.conn.cursor() as cur:
                    for table, rows in batch.items():
                        if not rows:
                            continue
                        cols = self._columns[table]
                        stage = sql.Identifier(f"stage_{table}")
                        with cur.copy(sql.SQL("copy {} ({}) from stdin").format(stage, cols)) as copy:
                            write_row = copy.write_row
                            for row in rows:
                                write_row(row)
                        cur.execute(sql.SQL("insert into {} ({}) select {} from {} on conflict do nothing").format(
                            sql.Identifier(BARE_SCHEMA, table), cols, cols, stage))
                self.conn.commit()
                self.batches_committed += 1
                if self.end_seen_in == n:
                    self.done_ns = time.time_ns()
                    self.committed_end.set()
        except BaseException as exc:  # reported to the parent
            self.error = exc
            self.committed_end.set()


def _direct_connection_class() -> type[Any]:
    """A websockets connection that hands each complete text frame to ``handler`` inside the socket read.

    The same receive technique as :class:`kalshi_ws.client.KalshiWebSocketClient` (websockets' own parser,
    frames handled synchronously as each read is parsed, no ``await recv()`` per message), so the bare
    pipeline stays the practical limit of one Python process for the production path's design.
    """
    from websockets.asyncio.client import ClientConnection
    from websockets.frames import Opcode

    text = Opcode.TEXT

    class DirectConnection(ClientConnection):
        handler: Callable[[bytes], None] | None = None

        def process_event(self, event: Any) -> None:
            handler = self.handler
            if handler is not None and event.opcode is text and event.fin:
                handler(event.data)
            else:
                super().process_event(event)

    return DirectConnection


async def _bare(cfg: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from kalshi_ws import messages as m
    from kalshi_ws.auth import Signer

    decode = m.decode
    end_id = cfg["end_trade_id"]
    writer = _BareWriter(cfg["dsn"])
    writer.start()
    enc = m._encoder.encode  # snapshot levels as jsonb text

    def empty() -> dict[str, list[tuple[Any, ...]]]:
        return {t: [] for t in BARE_TABLES}

    buf = empty()
    deltas, tickers, trades, snaps = buf["orderbook_delta"], buf["ticker"], buf["trade"], buf["orderbook_snapshot"]
    pending = 0
    batch_no = 0
    flushed_at = time.monotonic()
    #: Batches the writer's queue had no room for: handed over by the loop below, reading paused meanwhile.
    stalled: list[dict[str, list[tuple[Any, ...]]]] = []
    wake = asyncio.Event()
    end = False
    signer = Signer.from_file(cfg["key_id"], cfg["private_key_path"])
    connecting = connect(cfg["ws_url"], additional_headers=signer.websocket_headers(), max_size=None,
                         compression="deflate" if cfg.get("compress") else None, ping_interval=None,
                         create_connection=_direct_connection_class())
    cpu0 = time.process_time()
    async with connecting as ws:
        time_ns = time.time_ns
        monotonic = time.monotonic
        OrderbookDelta, Ticker, Trade, Snapshot = m.OrderbookDelta, m.Ticker, m.Trade, m.OrderbookSnapshot
        batches = writer.batches
        transport = ws.transport

        def on_frame(frame: bytes) -> None:
            nonlocal buf, deltas, tickers, trades, snaps, pending, batch_no, flushed_at, end
            received_ns = time_ns()
            msg = decode(frame)
            t = type(msg)
            if t is OrderbookDelta:
                p = msg.msg
                deltas.append((msg.sid, msg.seq, p.market_ticker, p.price_dollars, p.delta_fp, p.side, p.ts_ms,
                               received_ns))
            elif t is Ticker:
                p = msg.msg
                tickers.append((p.market_ticker, p.ts_ms, p.price_dollars, p.yes_bid_dollars, p.yes_ask_dollars,
                                p.volume_fp, p.open_interest_fp, p.yes_bid_size_fp, p.yes_ask_size_fp,
                                p.last_trade_size_fp, received_ns))
            elif t is Trade:
                p = msg.msg
                trades.append((p.trade_id, p.market_ticker, p.yes_price_dollars, p.no_price_dollars, p.count_fp,
                               p.taker_outcome_side, p.ts_ms, received_ns))
                if p.trade_id == end_id:
                    end = True
            elif t is Snapshot:
                p = msg.msg
                snaps.append((msg.sid, msg.seq, p.market_ticker, enc(p.yes_dollars_fp).decode(),
                              enc(p.no_dollars_fp).decode(), received_ns))
            else:
                return
            pending += 1
            if end or pending >= BATCH_ROWS or monotonic() - flushed_at >= BATCH_SECONDS:
                batch_no += 1
                if end:
                    writer.end_seen_in = batch_no
                    wake.set()
                if stalled:
                    stalled.append(buf)
                else:
                    try:
                        batches.put_nowait(buf)
                    except queue.Full:  # the database is behind: stop reading until the writer takes it
                        stalled.append(buf)
                        transport.pause_reading()
                        wake.set()
                buf = empty()
                deltas, tickers, trades, snaps = (buf["orderbook_delta"], buf["ticker"], buf["trade"],
                                                  buf["orderbook_snapshot"])
                pending = 0
                flushed_at = monotonic()

        ws.handler = on_frame
        await ws.send(_subscribe_command(cfg))
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            while stalled:
                await loop.run_in_executor(None, batches.put, stalled[0])
                del stalled[0]
            if end:
                break
            transport.resume_reading()
        await loop.run_in_executor(None, writer.committed_end.wait)
    writer.batches.put(None)
    writer.join()
    if writer.error is not None:
        raise writer.error
    stats = _child_stats(cpu0)
    writer.conn.close()
    return {"done_ns": writer.done_ns, "batches": writer.batches_committed, **stats}


# ---------------------------------------------------------------------------------------------------
# receive only (for the per-stage breakdown): the websockets client's cost per frame, nothing else


async def _recv(cfg: dict[str, Any]) -> dict[str, Any]:
    want = cfg["frames"] + len(cfg["channels"])  # the acks come first
    connecting = _connect(cfg)
    cpu0 = time.process_time()
    async with connecting as ws:
        await ws.send(_subscribe_command(cfg))
        recv = ws.recv
        for _ in range(want):
            await recv(False)
        done_ns = time.time_ns()
    return {"done_ns": done_ns, **_child_stats(cpu0)}


async def _rawrecv(cfg: dict[str, Any]) -> dict[str, Any]:
    """Receive only, with a minimal frame parser on an asyncio Protocol (all frames of a read at once).

    Not a client (no masking of our frames beyond the subscribe, no fragmentation, no control frames): it only
    measures what receiving costs when frames are parsed in bulk instead of one coroutine round trip each.
    """
    import base64
    import os
    from urllib.parse import urlsplit

    from kalshi_ws.auth import Signer

    if cfg.get("compress"):
        raise ValueError("rawrecv has no permessage-deflate")
    want = cfg["frames"] + len(cfg["channels"])
    url = urlsplit(cfg["ws_url"])
    headers = Signer.from_file(cfg["key_id"], cfg["private_key_path"]).websocket_headers()
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    class Proto(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = bytearray()
            self.upgraded = False
            self.count = 0

        def data_received(self, data: bytes) -> None:
            buf = self.buf
            buf += data
            if not self.upgraded:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[:end + 4]
                self.upgraded = True
            pos = 0
            n = len(buf)
            payloads = []
            while n - pos >= 2:
                length = buf[pos + 1] & 0x7F
                head = 2
                if length == 126:
                    if n - pos < 4:
                        break
                    length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                    head = 4
                elif length == 127:
                    if n - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                    head = 10
                if n - pos < head + length:
                    break
                payloads.append(bytes(buf[pos + head:pos + head + length]))
                pos += head + length
            del buf[:pos]
            self.count += len(payloads)
            if self.count >= want and not done.done():
                done.set_result(time.time_ns())

    cpu0 = time.process_time()
    transport, proto = await loop.create_connection(Proto, url.hostname, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {url.path} HTTP/1.1", f"Host: {url.netloc}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    payload = _subscribe_command(cfg).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    header = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    transport.write(header + mask + masked)
    done_ns = await done
    stats = _child_stats(cpu0)
    transport.close()
    return {"done_ns": done_ns, **stats}


async def _sansio(cfg: dict[str, Any]) -> dict[str, Any]:
    """Receive only, through websockets' own sans-I/O ClientProtocol driven by a plain asyncio Protocol:
    ``receive_data(chunk)`` then every frame of the chunk from ``events_received()`` in one go (RFC-complete
    parsing, control frames answered via ``data_to_send()``), without the asyncio connection's per-message
    coroutine and queue round trip."""
    from urllib.parse import urlsplit

    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.uri import parse_uri

    from kalshi_ws.auth import Signer

    want = cfg["frames"] + len(cfg["channels"])
    url = urlsplit(cfg["ws_url"])
    headers = Signer.from_file(cfg["key_id"], cfg["private_key_path"]).websocket_headers()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    extensions = None
    if cfg.get("compress"):
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        extensions = [ClientPerMessageDeflateFactory()]
    ws = ClientProtocol(parse_uri(cfg["ws_url"]), max_size=None, extensions=extensions)
    request = ws.connect()
    for k, v in headers.items():
        request.headers[k] = v
    TEXT = Opcode.TEXT

    class Proto(asyncio.Protocol):
        count = 0
        transport: asyncio.Transport

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            ws.send_request(request)
            for data in ws.data_to_send():
                transport.write(data)

        def data_received(self, data: bytes) -> None:
            ws.receive_data(data)
            n = 0
            for event in ws.events_received():
                if type(event) is Frame and event.opcode is TEXT:
                    n += 1
                elif not isinstance(event, Frame):  # the handshake response: subscribe now
                    ws.send_text(_subscribe_command(cfg).encode())
            for out in ws.data_to_send():
                if out:
                    self.transport.write(out)
            self.count += n
            if self.count >= want and not done.done():
                done.set_result(time.time_ns())

    cpu0 = time.process_time()
    transport, _ = await loop.create_connection(Proto, url.hostname, url.port)
    done_ns = await done
    stats = _child_stats(cpu0)
    transport.close()
    return {"done_ns": done_ns, **stats}


# ---------------------------------------------------------------------------------------------------
# (c) production


async def _production(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import production

    return await production.run(cfg, _child_stats)


async def _client_only(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import production

    return await production.run_client_only(cfg, _child_stats)


PIPELINES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "naive": _naive,
    "bare": _bare,
    "production": _production,
    "recv": _recv,
    "rawrecv": _rawrecv,
    "sansio": _sansio,
    "client": _client_only,
}


def child_main(kind: str, cfg: dict[str, Any], result: Connection) -> None:
    """Entry point of a pipeline process: run once, send the stats (or the error) to the parent."""
    try:
        if cfg.get("gc_threshold") is not None:  # experiment knob: --gc-threshold N (0 = gc disabled)
            import gc

            if cfg["gc_threshold"] == 0:
                gc.disable()
            else:
                gc.set_threshold(cfg["gc_threshold"], 10, 10)
        if cfg.get("py_spy"):
            time.sleep(1.0)  # let the parent attach py-spy before the stream starts
        if cfg.get("profile"):
            out = _profiled(kind, cfg)
        else:
            out = asyncio.run(PIPELINES[kind](cfg))
        result.send(("ok", out))
    except BaseException as exc:
        import traceback

        result.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        result.close()


def _profiled(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        out = asyncio.run(PIPELINES[kind](cfg))
    finally:
        profiler.stop()
    path = cfg["profile"]
    with open(path, "w") as fh:
        fh.write(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
    with open(path.replace(".txt", ".html"), "w") as fh:
        fh.write(profiler.output_html())
    return out
