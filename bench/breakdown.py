"""Where the microseconds go: client CPU per frame, stage by stage, on the mixed stream.

    python -m bench.breakdown [--frames 100000]

Each stage is timed with ``time.process_time`` (CPU of this process, all threads), best of three:

* ``receive``: the ``websockets`` client reading pre-framed frames from the frame source over a real
  socket and returning them as bytes (a separate process; nothing else done);
* ``decode``: :func:`kalshi_ws.messages.decode` (msgspec, typed structs, Decimals);
* ``protocol``: :meth:`kalshi_ws.protocol.SessionProtocol.receive` minus ``decode`` (sid/seq tracking,
  book updates and checks, delivery decisions);
* the storage stages from :func:`bench.production.breakdown_stages` (row building, COPY formatting and
  sending, and the server-side merge as the client sees it) once ``kalshi_store`` provides them;
* ``bare rows``/``bare COPY``: the bare pipeline's row tuples and ``COPY ... write_row`` for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from . import production  # noqa: E402
from .frames import SIDS, FrameGenerator, StreamSpec  # noqa: E402


def cpu_per_frame(fn: Callable[[], Any], n: int, repeat: int = 3, setup: Callable[[], Any] | None = None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best * 1e6 / n


def protocol_for(spec: StreamSpec) -> Any:
    """A SessionProtocol subscribed to the stream's channels (acks fed in, as the source answers)."""
    from kalshi_ws.protocol import SessionProtocol, Subscription

    subs = [Subscription(ch, tuple(spec.tickers)) for ch in spec.channels]
    proto = SessionProtocol(subs)
    proto.connection_opened("ws://bench")
    for cmd in proto.take_commands():
        obj = json.loads(cmd)
        for channel in obj["params"]["channels"]:
            ack = {"id": obj["id"], "type": "subscribed", "msg": {"channel": channel, "sid": SIDS[channel]}}
            proto.receive(json.dumps(ack).encode(), time.time_ns())
    proto.take_events()
    proto.take_commands()
    return proto


def measure(n: int, dsn: str | None, src_runner: Callable[[int], float] | None) -> dict[str, float]:
    from kalshi_ws import messages as m

    spec = StreamSpec(kind="mixed", start_ms=time.time_ns() // 1_000_000)
    frames = FrameGenerator(spec).take(n)
    out: dict[str, float] = {}
    if src_runner is not None:
        out["receive (websockets recv)"] = src_runner(n)
    decode = m.decode

    def decode_all() -> None:
        for f in frames:
            decode(f)

    out["decode (messages.decode)"] = cpu_per_frame(decode_all, n)

    holder: dict[str, Any] = {}

    def fresh() -> None:
        holder["p"] = protocol_for(spec)

    def feed() -> None:
        receive = holder["p"].receive
        ns = time.time_ns()
        for f in frames:
            receive(f, ns)

    total = cpu_per_frame(feed, n, setup=fresh)
    out["protocol (receive - decode: seq, books)"] = total - out["decode (messages.decode)"]
    msgs = [decode(f) for f in frames]
    if dsn is not None:
        out.update(_bare_stages(msgs, dsn, n))
        if production.storage_available() is None:
            out.update(production.breakdown_stages(msgs, dsn, n, cpu_per_frame))
    return {k: round(v, 3) for k, v in out.items()}


def _bare_stages(msgs: list[Any], dsn: str, n: int) -> dict[str, float]:
    import psycopg

    from kalshi_ws import messages as m

    def rows() -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        ns = time.time_ns()
        for msg in msgs:
            if type(msg) is m.OrderbookDelta:
                p = msg.msg
                out.append((msg.sid, msg.seq, p.market_ticker, p.price_dollars, p.delta_fp, p.side, p.ts_ms, ns))
        return out

    deltas = rows()
    res = {"bare rows (deltas only, per delta)": cpu_per_frame(rows, len(deltas)) * len(deltas) / n}
    with psycopg.connect(dsn) as conn:
        conn.execute("create temp table bd (sid int, seq bigint, market_ticker text, price numeric, "
                      "delta numeric, side text, ts_ms bigint, received_ns bigint)")
        conn.commit()

        def copy() -> None:
            with conn.cursor() as cur, cur.copy("copy bd from stdin") as cp:
                for r in deltas:
                    cp.write_row(r)
            conn.rollback()

        res["bare COPY write_row (per delta)"] = cpu_per_frame(copy, len(deltas))
    return res


def main(argv: list[str] | None = None) -> int:
    from .run import Database, run_once
    from .source import FrameSource

    ap = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--database-url")
    args = ap.parse_args(argv)
    db = Database(args.database_url)
    try:
        if production.storage_available() is None:
            production.prepare(db.dsn)
        with FrameSource() as src:
            def recv(n: int) -> float:
                best = []
                for i in range(3):
                    spec = StreamSpec(kind="mixed", run=900 + i, start_ms=time.time_ns() // 1_000_000)
                    r = run_once(db, src, "recv", spec, n)
                    if r.cpu_us_per_msg is not None:
                        best.append(r.cpu_us_per_msg)
                return min(best) if best else float("nan")

            stages = measure(args.frames, db.dsn, recv)
    finally:
        db.close()
    width = max(map(len, stages))
    print(f"client CPU per frame, mixed stream, {args.frames:,} frames (best of 3):")
    for name, us in stages.items():
        print(f"  {name:<{width}}  {us:7.2f}" + ("" if "ms" in name else " us"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
