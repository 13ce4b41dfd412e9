"""Record the exchange simulator into PostgreSQL with the production client and Recorder; keep its ground truth.

:func:`record` runs the simulator (seeded, driven step by step), the production WebSocket client
and the production :class:`~kalshi_store.recorder.Recorder` into a fresh migrated database, with a sequence gap
(a dropped order book delta, repaired by a snapshot) and a dropped connection (reconnect, new snapshots) in the
middle, then computes the depth summaries like the ingest flow does. The tests check the report views against
the simulator's own record: its trade tape, the book it held at any moment, and its account.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kalshi_testing import wait_until
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kalshi_ingest.summaries import compute_depth_summaries
from kalshi_store.recorder import Recorder
from kalshi_ws import events, messages
from kalshi_ws.auth import Signer
from kalshi_ws.client import ClientOptions, KalshiWebSocketClient
from kalshi_ws.protocol import SessionProtocol, Subscription
from kalshi_ws.simulator import MarketModel, Simulator

MARKET_SET = "reporting"
CHANNELS = ("orderbook_delta", "trade", "ticker", "fill", "market_positions", "user_orders")
#: The data messages a subscription above can deliver (the simulator counts the frames it sent per type).
DATA_TYPES = ("orderbook_snapshot", "orderbook_delta", "trade", "ticker", "fill", "market_position", "user_order")
DEPTH_DISTANCES = (Decimal("0"), Decimal("0.02"), Decimal("0.05"))
_counter = itertools.count(1)


@dataclass
class Recording:
    """A recorded session and the simulator's ground truth for it."""

    url: str
    session_id: str
    tickers: list[str]
    model: MarketModel
    tape: list[dict[str, Any]]
    events: list[events.SessionEvent] = field(default_factory=list)

    #: The read connection of :meth:`query`: opened once (hundreds of queries per test), autocommit.
    _conn: psycopg.Connection[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    def query(self, statement: str, params: Any = None) -> list[dict[str, Any]]:
        """One statement, committed, its rows as dicts (times in UTC)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True, row_factory=psycopg.rows.dict_row)
            self._conn.execute("set time zone 'UTC'")
        return self._conn.execute(statement, params).fetchall()  # type: ignore[arg-type]


class _CountingSink:
    """The recorder, plus counts of what the client delivered (to know when everything sent has arrived)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.counts: Counter[str] = Counter()
        self.events: list[events.SessionEvent] = []

    def on_message(self, message: messages.AnyMessage, generation: int, received_ns: int) -> None:
        self.counts[str(message.__struct_config__.tag)] += 1
        self.recorder.on_message(message, generation, received_ns)

    def on_event(self, event: events.SessionEvent) -> None:
        self.events.append(event)
        self.recorder.on_event(event)

    @property
    def paused(self) -> bool:
        return self.recorder.paused

    async def wait_resumed(self) -> None:
        await self.recorder.wait_resumed()


async def record(url: str, folder: Path, *, use_yes_price: bool = False, chunks: int = 36, faults: bool = True,
                 seed: int = 11) -> Recording:
    """Record the simulator into the migrated database at ``url``: ``chunks`` x 50 model steps, with a dropped book
    delta after a third of them and a dropped connection after two thirds when ``faults``. ``use_yes_price`` is
    pinned on the book subscription (NO-side prices then arrive as YES prices)."""
    async with Simulator(markets=3, seed=seed, rate=0, data_dir=folder / "sim") as sim:
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        subscriptions = [Subscription("orderbook_delta", tuple(sim.tickers)),
                         *(Subscription(channel) for channel in CHANNELS[1:])]
        options = ClientOptions(backoff_initial=0.02, backoff_cap=0.1, poll_interval=0.02, close_timeout=1.0)
        async with Recorder(url, spill_dir=folder / "spill", flush_interval=0.05) as recorder:
            started = datetime.now(UTC)
            session_id = await recorder.open_session(MARKET_SET, sim.base_url, sim.tickers, CHANNELS, started,
                                                     started + timedelta(seconds=30), use_yes_price=use_yes_price)
            sink = _CountingSink(recorder)
            protocol = SessionProtocol(subscriptions, use_yes_price=use_yes_price)
            client = KalshiWebSocketClient(sim.ws_url, sink, signer=signer, options=options, protocol=protocol)

            def delivered() -> bool:
                if any(conn.queue for conn in sim.connections.values()):
                    return False
                sent: Counter[str] = Counter()
                for frames in sim.sent_frames.values():  # every connection so far
                    sent.update({kind: n for kind, n in frames.items() if kind in DATA_TYPES})
                return all(client.books.is_trusted(t) for t in sim.tickers) and all(
                    sink.counts[kind] == sent[kind] for kind in DATA_TYPES)

            def recovered(outcome: str) -> bool:
                return any(isinstance(e, events.Recovered) and e.outcome == outcome for e in sink.events)

            async with client:
                await wait_until(delivered, interval=0.005)
                drop, close = (chunks // 3, 2 * chunks // 3) if faults else (-1, -1)
                for chunk in range(chunks):
                    if chunk == drop:
                        sim.inject("drop", channel="orderbook_delta")
                    if chunk == close:
                        sim.inject("close", mode="abort")
                        await wait_until(lambda: client.generation == 2 and recovered("reconnected"),
                                         interval=0.005)
                    sim.step(50)
                    await wait_until(delivered, interval=0.005)
                    if chunk == drop:
                        await wait_until(lambda: recovered("snapshot"), interval=0.005)
            await recorder.close_session("completed")
        tape = sim.trade_tape()
        model = sim.model
        tickers = list(sim.tickers)
    compute_depth_summaries(url, session_id, MARKET_SET, bucket_seconds=0.5, distances=DEPTH_DISTANCES)
    return Recording(url=url, session_id=session_id, tickers=tickers, model=model, tape=tape, events=sink.events)


def _database_url(server_url: str, database: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = database
    return make_conninfo(**params)  # type: ignore[arg-type]


def fresh_database(pg_url: str, template: str) -> Iterator[str]:
    """A migrated database copied from the session's template, dropped when the generator is closed."""
    name = f"reporting_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {} strategy file_copy").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        yield _database_url(pg_url, name)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
