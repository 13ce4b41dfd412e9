"""``python -m kalshi_ws.simulator`` / ``kalshi-ingest simulate``: run the simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kalshi-ingest simulate", description="Run a local Kalshi exchange simulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--markets", type=int, default=8, help="number of simulated markets")
    p.add_argument("--tickers", default="", help="comma-separated market tickers (overrides --markets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=50.0, help="messages per second (0 = idle, inf = max)")
    p.add_argument("--heartbeat-interval", type=float, default=10.0)
    p.add_argument("--public-key", action="append", default=[], metavar="KEY_ID=PATH",
                   help="register a public key (PEM); repeatable")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the generated key pair is written (default: ./.kalshi-sim; `kalshi-ingest simulate` "
                        "passes KALSHI_SIMULATOR_DIR or <data dir>/simulator, where runs look for it)")
    p.add_argument("--rest-auth", choices=["required", "optional", "off"], default="required")
    p.add_argument("--random-faults", type=float, default=0.0, metavar="PER_SECOND",
                   help="inject seeded random faults on every connection at this rate (0 = none)")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--seq-scope", choices=["sid", "connection"], default="sid",
                   help="number seq per subscription (as Kalshi's spec shows) or per connection (spec question 12.4)")
    return p


async def _run(args: argparse.Namespace) -> None:
    from .server import Simulator

    keys: dict[str, Path] = {}
    for item in args.public_key:
        kid, sep, path = item.partition("=")
        if not sep or not kid or not path:
            raise SystemExit(f"--public-key expects KEY_ID=PATH, got {item!r}")
        keys[kid] = Path(path)
    markets: int | list[str] = [t for t in args.tickers.split(",") if t] or args.markets
    data_dir = args.data_dir or Path.cwd() / ".kalshi-sim"
    rate = math.inf if args.rate == math.inf else args.rate
    async with Simulator(markets=markets, seed=args.seed, rate=rate, host=args.host, port=args.port,
                         data_dir=data_dir, heartbeat_interval=args.heartbeat_interval, public_keys=keys,
                         rest_auth=args.rest_auth, seq_scope=args.seq_scope) as sim:
        print(f"simulator listening on {sim.base_url}  (ws: {sim.ws_url})", flush=True)
        if not keys:
            print(f"key id: {sim.key_id}", flush=True)
            print(f"private key: {sim.private_key_path}", flush=True)
        else:
            print(f"registered keys: {', '.join(keys)} (plus generated {sim.key_id} at {sim.private_key_path})",
                  flush=True)
        print(f"markets: {', '.join(sim.tickers)}", flush=True)
        if args.random_faults > 0:
            sim.start_random_faults(args.random_faults, seed=args.fault_seed)
            print(f"random faults: {args.random_faults}/s (seed {args.fault_seed}); log at {sim.base_url}/_sim/faults",
                  flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))
    return 0
