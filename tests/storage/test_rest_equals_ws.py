"""A trade or fill stored from REST equals the same one stored from the WebSocket, column for column.

The simulator serves both: its WS ``trade``/``fill`` frames and its ``GET /markets/trades``/``GET /portfolio/fills``
come from one record. Both go through one row builder (the REST client returns the WS payload structs), so the
stored rows may differ only in how they arrived (source, connection, session, receive time) and, for fills, in
the fields REST does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from kalshi_testing import wait_until

from kalshi_store.recorder import Recorder
from kalshi_ws.auth import Signer
from kalshi_ws.client import KalshiWebSocketClient
from kalshi_ws.protocol import Subscription
from kalshi_ws.rest import KalshiRestClient
from kalshi_ws.simulator import Simulator

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

#: How a row arrived, not what it says.
ARRIVAL = {"source", "session_id", "generation", "sid", "seq", "received_at"}
#: Fill fields the WS ``fill`` has and ``GET /portfolio/fills`` does not (NULL in a REST row).
WS_ONLY_FILL_FIELDS = {"exchange_index", "post_position", "purchased_side"}


def stored(url: str, table: str, key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every row of ``kalshi.<table>`` by its natural key, as ``{column: value}`` (numerics as ``Decimal``)."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(f"select * from kalshi.{table}")  # noqa: S608 - test constant
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {tuple(row[k] for k in key): row for row in rows}


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"select count(*) from kalshi.{table}").fetchone()  # noqa: S608 - test constant
    return int(row[0]) if row else 0


async def test_rest_and_websocket_store_the_same_trades_and_fills(db_url: str, tmp_path: Path) -> None:
    async with Simulator(markets=4, seed=3, rate=0) as sim:
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
        async with Recorder(db_url, spill_dir=tmp_path) as recorder:
            await recorder.open_session("ws", "simulator", sim.tickers, ["trade", "fill"])
            client = KalshiWebSocketClient(sim.ws_url, recorder, [Subscription("trade"), Subscription("fill")],
                                           signer=signer)
            async with client:
                await wait_until(lambda: any({"trade", "fill"} <= set(c.by_channel)
                                             for c in sim.connections.values()), what="subscribed")
                sim.step(6000)
                trades, fills = len(sim.trade_tape()), len(sim.account_fills())
                assert trades > 50 and fills > 5, "the simulator hardly traded: the comparison proves little"
                await wait_until(lambda: count(db_url, "trades") == trades and count(db_url, "fills") == fills,
                                 in_thread=True, what="every WS trade and fill stored")
            await recorder.close_session()
        ws_trades = stored(db_url, "trades", ("trade_id",))
        ws_fills = stored(db_url, "fills", ("trade_id", "order_id"))
        with psycopg.connect(db_url) as conn:
            conn.execute("delete from kalshi.trades")
            conn.execute("delete from kalshi.fills")

        async with KalshiRestClient(sim.rest_url, signer) as rest:
            rest_trades, rest_fills = await rest.get_trades(), await rest.get_fills()
        async with Recorder(db_url, spill_dir=tmp_path) as recorder:
            await recorder.open_session("rest", "simulator", sim.tickers, ["trade", "fill"])
            assert recorder.add_rest_trades(rest_trades) == trades
            assert recorder.add_rest_fills(rest_fills) == fills
            await recorder.close_session()
    from_rest_trades = stored(db_url, "trades", ("trade_id",))
    from_rest_fills = stored(db_url, "fills", ("trade_id", "order_id"))

    assert from_rest_trades.keys() == ws_trades.keys() and len(ws_trades) == trades
    for key, ws in ws_trades.items():
        rest_row = from_rest_trades[key]
        assert (ws["source"], rest_row["source"]) == ("ws", "rest")
        assert rest_row["generation"] is rest_row["sid"] is rest_row["seq"] is None
        assert {k: v for k, v in rest_row.items() if k not in ARRIVAL} == {
            k: v for k, v in ws.items() if k not in ARRIVAL}, key
    assert from_rest_fills.keys() == ws_fills.keys() and len(ws_fills) == fills
    for key, ws in ws_fills.items():
        rest_row = from_rest_fills[key]
        assert (ws["source"], rest_row["source"]) == ("ws", "rest")
        assert all(rest_row[k] is None for k in WS_ONLY_FILL_FIELDS)
        assert {k: v for k, v in rest_row.items() if k not in ARRIVAL | WS_ONLY_FILL_FIELDS} == {
            k: v for k, v in ws.items() if k not in ARRIVAL | WS_ONLY_FILL_FIELDS}, key
