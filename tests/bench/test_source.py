"""Smoke test: the benchmark's frame source accepts a signed Kalshi handshake, acks subscriptions and streams
valid frames with correct per-sid seq; a bad signature gets 401. No timing assertions."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bench.frames import SIDS, StreamSpec
from bench.source import FrameSource
from kalshi_ws import messages as m
from kalshi_ws.auth import Signer, generate_key_pair


@pytest.fixture(scope="module")
def source():
    with FrameSource() as src:
        yield src


@pytest.mark.parametrize(("rate", "compress"), [(None, False), (5_000.0, False), (None, True)])
async def test_streams_valid_frames(source: FrameSource, rate: float | None, compress: bool) -> None:
    spec = StreamSpec(kind="mixed", markets=20, run=7)
    n = 2_000
    info = source.prepare(spec, n, rate, compress=compress)
    signer = Signer.from_file(source.key_id, source.private_key_path)
    async with connect(source.ws_url, additional_headers=signer.websocket_headers(), max_size=None,
                       compression="deflate" if compress else None) as ws:
        assert bool(ws.protocol.extensions) == compress
        for channel in spec.channels:  # one subscribe per channel, as the production client does
            await ws.send(json.dumps({"id": SIDS[channel], "cmd": "subscribe",
                                      "params": {"channels": [channel], "market_tickers": spec.tickers}}))
        acks = [m.decode(await ws.recv(decode=False)) for _ in spec.channels]
        assert {(a.msg.channel, a.msg.sid) for a in acks if isinstance(a, m.Subscribed)} == {
            (c, SIDS[c]) for c in spec.channels}
        last: dict[int, int] = {}
        msg = None
        for _ in range(n):
            msg = m.decode(await ws.recv(decode=False))
            assert isinstance(msg, m.OrderbookSnapshot | m.OrderbookDelta | m.Ticker | m.Trade), msg
            if not isinstance(msg, m.Ticker):
                assert msg.seq == last.get(msg.sid, 0) + 1
                last[msg.sid] = msg.seq
        assert isinstance(msg, m.Trade) and msg.msg.trade_id == info["end_trade_id"]
    sent = source.result(timeout=30)
    assert sent["error"] is None and sent["frames"] == n


async def test_rejects_a_bad_signature(source: FrameSource, tmp_path) -> None:
    key_id, private_path, _ = generate_key_pair(tmp_path)  # not the registered key
    signer = Signer.from_file(source.key_id, private_path)
    with pytest.raises(InvalidStatus) as err:
        async with connect(source.ws_url, additional_headers=signer.websocket_headers()):
            pass
    assert err.value.response.status_code == 401
