"""A Kalshi-compatible frame source that costs almost no CPU, in its own process.

The source is a raw asyncio server on ``127.0.0.1:0`` (port chosen by the OS) that speaks just enough of
Kalshi's WebSocket API for one recording client:

* the HTTP upgrade on ``/trade-api/ws/v2``, done by hand; the ``KALSHI-ACCESS-*`` headers are checked
  once per connection with :func:`kalshi_ws.auth.verify_signature` against a key registered for the run
  (a fresh pair from :func:`kalshi_ws.auth.generate_key_pair`); anything else gets 401;
* ``subscribe`` commands, answered with one ``subscribed`` per channel (sids fixed per channel, see
  :data:`bench.frames.SIDS`); other commands get an ``ok``; pings get pongs; a close gets a close;
* once every channel of the current stream is subscribed, the frames: pre-encoded payloads, pre-framed
  (unmasked server frames) and joined into ~1 MiB writes (``fast`` mode), or generated and written in
  small batches on a fixed schedule (``paced`` mode, e.g. 10 000 msgs/s).

By default no compression is negotiated (the server ignores a client's ``permessage-deflate`` offer), so
the client under test pays only for framing and decoding. With ``compress=True`` the source accepts
``permessage-deflate`` (context takeover, as a plain acceptance means) and sends the data frames compressed,
pre-compressed in stream order at prepare time; command replies stay uncompressed (allowed per message), and
compressed client frames are inflated. Every stream ends with a trade whose id is known in advance
(:func:`end_trade_id`): when that trade is committed, everything before it on the connection is too.

The parent talks to the process through a pipe: :meth:`FrameSource.prepare` (build the next stream and
wait until it is ready) and :meth:`FrameSource.result` (when the first and last byte were written).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing as mp
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kalshi_ws.auth import WS_PATH, generate_key_pair, load_public_key, verify_signature

from .frames import SIDS, DeflateFramer, FrameGenerator, StreamSpec, ws_chunks, ws_text_frame

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def end_trade_id(spec: StreamSpec) -> str:
    """The id of the trade that closes every stream built from ``spec``."""
    return f"{spec.seed & 0xFFFFFFFF:08x}-{spec.run & 0xFFFF:04x}-4000-8fff-ffffffffffff"


@dataclass
class Job:
    """One stream: ``n`` frames as fast as possible (``rate=None``) or ``n`` frames at ``rate`` per second."""

    spec: StreamSpec
    n: int
    rate: float | None = None
    compress: bool = False


#: Paced streams up to this many frames are generated before the run (so the source spends ~0.5 us per frame
#: while pacing, not ~4); longer ones (the 10-minute run) are generated on the fly.
PREBUILD_PACED_MAX = 600_000


def _build(job: Job) -> tuple[FrameGenerator, list[bytes] | None, Callable[[bytes], bytes]]:
    gen = FrameGenerator(job.spec)
    framer: Callable[[bytes], bytes] = DeflateFramer() if job.compress else ws_text_frame
    if job.rate is not None:
        if job.n <= PREBUILD_PACED_MAX:
            frames = gen.take(job.n - 1)
            frames.append(_end_trade(gen))
            return gen, [framer(f) for f in frames], framer  # one pre-framed frame per entry
        return gen, None, framer  # generated (and compressed) on the fly
    frames = gen.take(job.n - 1)
    frames.append(_end_trade(gen))
    return gen, ws_chunks(frames, framer=framer), framer


def _end_trade(gen: FrameGenerator) -> bytes:
    frame = gen._trade_counted()
    last = gen.last_trade_id
    assert last is not None
    end = end_trade_id(gen.spec)
    gen.last_trade_id = end
    return frame.replace(last.encode(), end.encode(), 1)


class _Server:
    def __init__(self, ctl: Connection, key_id: str, public_pem: bytes) -> None:
        self.ctl = ctl
        self.key_id = key_id
        self.public_key = load_public_key(public_pem)
        self.job: Job | None = None
        self.gen: FrameGenerator | None = None
        self.chunks: list[bytes] | None = None
        self.framer: Callable[[bytes], bytes] = ws_text_frame
        self.ready = asyncio.Event()

    # -- control ------------------------------------------------------------------------------------
    async def control(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                cmd, arg = await loop.run_in_executor(None, self.ctl.recv)
            except EOFError:
                return
            if cmd == "prepare":
                job = Job(StreamSpec(**arg["spec"]), arg["n"], arg.get("rate"), bool(arg.get("compress")))
                self.gen, self.chunks, self.framer = _build(job)
                self.job = job
                self.ctl.send(("ready", {"counts": dict(self.gen.counts), "end_trade_id": end_trade_id(job.spec),
                                         "bytes": sum(map(len, self.chunks or ())),
                                         "prebuilt": self.chunks is not None}))
            elif cmd == "stop":
                return

    # -- one connection -----------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        path = target.split("?", 1)[0]
        if method != "GET" or path != WS_PATH:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        ok = (headers.get("kalshi-access-key") == self.key_id
              and verify_signature(self.public_key, headers.get("kalshi-access-timestamp", ""), "GET", path,
                                   headers.get("kalshi-access-signature", "")))
        if not ok:
            body = (b'{"error":{"code":"authentication_error","message":"authentication_error",'
                    b'"details":"rpc error: code = Unauthenticated desc = INCORRECT_API_KEY_SIGNATURE"}}')
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            return
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _WS_GUID).digest())
        job, gen, chunks, framer = self.job, self.gen, self.chunks, self.framer
        offered = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        if job is not None and job.compress and not offered:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.ctl.send(("sent", {"first_write_ns": 0, "last_write_ns": 0, "frames": 0, "counts": {}, "seq": {},
                                    "end_trade_id": None,
                                    "error": "compress=True but the client did not offer permessage-deflate"}))
            return
        deflate = job is not None and job.compress
        extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extension + b"\r\n")
        self.job = self.gen = self.chunks = None  # one connection per job
        inflate = zlib.decompressobj(-15) if deflate else None
        needed = set(job.spec.channels) if job else set()
        subscribed: set[str] = set()
        extra_sid = 100
        streamer: asyncio.Task[None] | None = None
        while True:
            opcode, payload = await _read_frame(reader)
            if opcode & 0x40:  # RSV1: a compressed message from the client
                if inflate is None:
                    return
                payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
                opcode &= 0x0F
            if opcode == 0x8:  # close
                writer.write(b"\x88\x02\x03\xe8")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            if opcode == 0x9:  # ping
                writer.write(bytes((0x8A, len(payload))) + payload if len(payload) < 126 else b"")
                continue
            if opcode != 0x1:
                continue
            try:
                cmd = json.loads(payload)
            except ValueError:
                continue
            cid = cmd.get("id")
            if cmd.get("cmd") == "subscribe":
                for channel in cmd.get("params", {}).get("channels", []):
                    sid = SIDS.get(channel)
                    if sid is None:
                        extra_sid += 1
                        sid = extra_sid
                    ack = {"id": cid, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}
                    writer.write(ws_text_frame(json.dumps(ack, separators=(",", ":")).encode()))
                    subscribed.add(channel)
            else:
                reply: dict[str, Any] = {"id": cid, "type": "ok", "msg": {}}
                writer.write(ws_text_frame(json.dumps(reply, separators=(",", ":")).encode()))
            if job is not None and gen is not None and streamer is None and needed <= subscribed:
                streamer = asyncio.create_task(self._stream(writer, job, gen, chunks, framer))

    async def _stream(self, writer: asyncio.StreamWriter, job: Job, gen: FrameGenerator,
                      chunks: list[bytes] | None, framer: Callable[[bytes], bytes]) -> None:
        first = last = 0
        error = None
        try:
            await writer.drain()
            first = time.time_ns()
            if chunks is not None and job.rate is None:
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
            else:
                assert job.rate is not None
                t0 = time.monotonic()
                sent = 0
                while sent < job.n:
                    due = min(job.n, int((time.monotonic() - t0) * job.rate) + 1)
                    if due > sent:
                        if chunks is not None:  # pre-framed
                            writer.write(b"".join(chunks[sent:due]))
                        else:
                            frames = gen.take(due - sent - (1 if due == job.n else 0))
                            if due == job.n:
                                frames.append(_end_trade(gen))
                            writer.write(b"".join(framer(f) for f in frames))
                        sent = due
                        await writer.drain()
                    await asyncio.sleep(0.005)  # 200 writes/s: steady, and cheap for the source
            last = time.time_ns()
        except Exception as exc:  # the client went away: say so instead of leaving the parent waiting
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ctl.send(("sent", {"first_write_ns": first, "last_write_ns": last, "frames": job.n,
                                    "counts": dict(gen.counts), "seq": {str(k): v for k, v in gen.seq.items()},
                                    "end_trade_id": gen.last_trade_id, "error": error}))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One client frame (masked, as RFC 6455 requires); fragments are not used by clients for commands."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(n)
    if b1 & 0x80 and n:
        full = (mask * (n // 4 + 1))[:n]
        data = (int.from_bytes(data, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big")
    return b0 & 0x4F, data  # opcode, plus RSV1 (0x40) for a compressed message


def _child(ctl: Connection, key_id: str, public_pem: bytes) -> None:
    async def main() -> None:
        server = _Server(ctl, key_id, public_pem)
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, limit=1 << 20)
        ctl.send(("port", srv.sockets[0].getsockname()[1]))
        async with srv:
            await server.control()

    asyncio.run(main())


class FrameSource:
    """Parent-side handle: a registered key, a server process, and the URL to connect to."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kalshi-bench-key-")
        self.key_id, self.private_key_path, public_path = generate_key_pair(self._tmp.name)
        ctx = mp.get_context("spawn")
        self._ctl, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_end, self.key_id, Path(public_path).read_bytes()),
                                   name="kalshi-bench-source", daemon=True)
        self.process.start()
        kind, self.port = self._recv(30)
        assert kind == "port"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def _recv(self, timeout: float) -> Any:
        if not self._ctl.poll(timeout):
            raise TimeoutError("the frame source did not answer")
        return self._ctl.recv()

    def prepare(self, spec: StreamSpec, n: int, rate: float | None = None, compress: bool = False) -> dict[str, Any]:
        """Build the stream the next connection gets; returns expected counts and the end trade id."""
        self._ctl.send(("prepare", {"spec": asdict(spec), "n": n, "rate": rate, "compress": compress}))
        kind, info = self._recv(300)
        assert kind == "ready", kind
        return dict(info)

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """When the stream's first and last bytes were written (``time.time_ns()``), and what was sent."""
        kind, info = self._recv(timeout)
        assert kind == "sent", kind
        return dict(info)

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._ctl.send(("stop", None))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._tmp.cleanup()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FrameSource", "Job", "end_trade_id"]
