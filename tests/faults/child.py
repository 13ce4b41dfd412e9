"""A recording session in its own process, for the SIGTERM / SIGKILL rows of the fault matrix.

    python tests/faults/child.py CONFIG_JSON

CONFIG_JSON: {"base_url", "key_id", "key_path", "db_url", "data_dir", "duration", "tickers", "name",
"channels", "handle_sigterm"}. Runs :func:`kalshi_ingest.session.run_recording_session` (the flow's code path);
logs go to stderr; the summary is printed as one JSON line on stdout. With ``handle_sigterm`` SIGTERM
cancels the session task, as a flow cancellation does (the session flushes and closes ``cancelled``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from kalshi_ingest.config import MarketSet
from kalshi_ingest.session import run_recording_session
from kalshi_ingest.settings import Settings


async def main(cfg: dict) -> int:
    settings = Settings(kalshi_env=cfg["base_url"], kalshi_api_key_id=cfg["key_id"],
                        kalshi_private_key_path=Path(cfg["key_path"]), kalshi_ingest_data_dir=Path(cfg["data_dir"]))
    market_set = MarketSet(name=cfg.get("name", "faults"), tickers=cfg["tickers"],
                           channels=cfg.get("channels", ["orderbook_delta", "ticker", "trade"]))
    task = asyncio.create_task(run_recording_session(settings, market_set, cfg["db_url"], duration=cfg["duration"],
                                                     progress_interval=3600))
    if cfg.get("handle_sigterm", True):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    print(json.dumps({"event": "started"}), flush=True)
    try:
        summary = await task
    except asyncio.CancelledError:
        print(json.dumps({"event": "cancelled"}), flush=True)
        return 3
    print(json.dumps({"event": "summary", **summary.as_dict()}, default=str), flush=True)
    # SIGTERM while recording stops the session gracefully (it flushes and returns a `cancelled` summary)
    return 3 if summary.status == "cancelled" else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
