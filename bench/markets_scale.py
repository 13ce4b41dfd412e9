"""One session following thousands of markets: subscribe, follow and hand over (issue 10, "scale").

    python bench/markets_scale.py --markets 2000

A simulator with ``--markets`` markets runs in its own process (so this process's memory is the recorder's);
an embedded PostgreSQL in a temporary folder stores the data. Measured, in one run:

1. session A (a market set of the simulator's three series, every market) from its start to every order book
   snapshot stored (its coverage rows on record), and this process's RSS before and after: memory per market;
2. a market opened in a followed series mid-session: lifecycle message to first snapshot stored;
3. session B started while A records: from B's start to its books stored and A superseded (the handover), and
   A's end after it (the overlap).

Figures are printed and written to ``bench/results/markets-scale-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from kalshi_ingest.config import MarketSet  # noqa: E402
from kalshi_ingest.session import run_recording_session  # noqa: E402
from kalshi_ingest.settings import Settings  # noqa: E402
from kalshi_store.embedded import EmbeddedPostgres  # noqa: E402
from kalshi_store.migrations import migrate  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


async def wait_for(url: str, query: str, params: tuple[Any, ...], ok: Any, timeout: float) -> float:
    """Seconds until ``ok(value of query)`` holds."""
    start = time.monotonic()
    while True:
        value = await asyncio.to_thread(scalar, url, query, *params)
        if ok(value):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{query} {params}: last value {value!r}")
        await asyncio.sleep(0.05)


async def measure(markets: int, workdir: Path) -> dict[str, Any]:
    server = EmbeddedPostgres(workdir / "pg")
    server.start()
    port = free_port()
    sim_dir = workdir / "sim"
    sim = subprocess.Popen([sys.executable, "-m", "kalshi_ws.simulator", "--port", str(port), "--markets",
                            str(markets), "--rate", "300", "--data-dir", str(sim_dir), "--rest-auth", "optional"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = server.url()
        migrate(url)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_sim/state", timeout=2) as answer:
                    state = json.loads(answer.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        key = next((sim_dir / "keys").glob("*.key"))  # the simulator's generated key pair: <key id>.key
        key_id = key.stem
        settings = Settings(kalshi_env=base, kalshi_api_key_id=key_id, kalshi_private_key_path=key,
                            kalshi_ingest_data_dir=workdir / "data")
        series = sorted({t.split("-")[0] for t in state["tickers"]})
        market_set = MarketSet(name="scale", series=series, channels=["orderbook_delta", "ticker", "trade"],
                               session_seconds=600, max_markets=markets + 100, discovery_seconds=300)
        count = len(state["tickers"])
        before = rss_mb()
        started = time.monotonic()
        a = asyncio.create_task(run_recording_session(settings, market_set, url, duration=90,
                                                      progress_interval=3600))
        await wait_for(url, "select count(*) from kalshi.sessions", (), lambda n: n == 1, 120)
        a_id = str(scalar(url, "select session_id from kalshi.sessions"))
        await wait_for(url, "select count(distinct market_ticker) from kalshi.coverage where session_id = %s",
                       (a_id,), lambda n: n >= count, 300)
        books_stored = time.monotonic() - started
        after = rss_mb()
        with urllib.request.urlopen(f"{base}/_sim/open_market?series={series[0]}", timeout=5) as answer:
            new = json.loads(answer.read())["ticker"]
        opened = time.monotonic()
        await wait_for(url, "select count(*) from kalshi.orderbook_snapshots where market_ticker = %s", (new,),
                       lambda n: n > 0, 60)
        new_market_lag = time.monotonic() - opened
        b_started = time.monotonic()
        b = asyncio.create_task(run_recording_session(settings, market_set, url, duration=120,
                                                      progress_interval=3600))
        await wait_for(url, "select count(*) from kalshi.sessions where superseded_at is not null", (),
                       lambda n: n == 1, 300)
        handover = time.monotonic() - b_started
        first = await asyncio.wait_for(a, 120)
        overlap = scalar(url, "select extract(epoch from ended_at - superseded_at) from kalshi.sessions "
                              "where session_id = %s", first.session_id)
        b.cancel()
        try:
            await b
        except asyncio.CancelledError:
            pass
        return {
            "markets": count, "books_stored_seconds": round(books_stored, 2),
            "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "kb_per_market": round((after - before) * 1024 / count, 1),
            "new_market_snapshot_lag_seconds": round(new_market_lag, 3),
            "handover_seconds": round(handover, 2), "handover_overlap_seconds": round(float(overlap), 2),
            "a_status": first.status, "a_message": first.status_message,
        }
    finally:
        sim.terminate()
        sim.wait(10)
        server.stop("immediate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kalshi-scale-") as tmp:
        result = asyncio.run(measure(args.markets, Path(tmp)))
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["cpus"] = os.cpu_count()
    out = ROOT / "bench" / "results" / f"markets-scale-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:34} {value}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
