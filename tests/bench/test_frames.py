"""Smoke test: the benchmark's frame source produces valid Kalshi frames with correct per-sid seq."""

from __future__ import annotations

from decimal import Decimal

from bench.frames import SIDS, FrameGenerator, StreamSpec, ws_chunks, ws_text_frame
from kalshi_ws import messages as m


def _check(kind: str, n: int) -> FrameGenerator:
    gen = FrameGenerator(StreamSpec(kind=kind, markets=50))  # type: ignore[arg-type]
    frames = gen.take_ending_with_trade(n)
    assert len(frames) == n == gen.produced
    last: dict[int, int] = {}
    books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
    trade_ids: set[str] = set()
    for raw in frames:
        msg = m.decode(raw)
        assert isinstance(msg, m.OrderbookSnapshot | m.OrderbookDelta | m.Ticker | m.Trade), msg
        assert msg.sid == SIDS[{"orderbook_snapshot": "orderbook_delta", "orderbook_delta": "orderbook_delta",
                                "ticker": "ticker", "trade": "trade"}[type(msg).__struct_config__.tag]]
        if isinstance(msg, m.Ticker):
            assert msg.msg.yes_bid_dollars is not None and msg.msg.yes_ask_dollars is not None
            assert msg.msg.yes_bid_dollars < msg.msg.yes_ask_dollars
        else:
            assert msg.seq == last.get(msg.sid, 0) + 1
            last[msg.sid] = msg.seq
        if isinstance(msg, m.OrderbookSnapshot):
            books[msg.msg.market_ticker] = {"yes": dict(msg.msg.yes_dollars_fp), "no": dict(msg.msg.no_dollars_fp)}
        elif isinstance(msg, m.OrderbookDelta):
            assert msg.msg.price_dollars.as_tuple().exponent == -4
            assert msg.msg.delta_fp.as_tuple().exponent == -2
            book = books[msg.msg.market_ticker]  # snapshot first
            side = book[msg.msg.side]
            size = side.get(msg.msg.price_dollars, Decimal(0)) + msg.msg.delta_fp
            assert size >= 0
            if size == 0:
                del side[msg.msg.price_dollars]
            else:
                side[msg.msg.price_dollars] = size
            if book["yes"] and book["no"]:
                assert max(book["yes"]) < 1 - max(book["no"])  # never crossed
        elif isinstance(msg, m.Trade):
            assert msg.msg.trade_id not in trade_ids
            trade_ids.add(msg.msg.trade_id)
            assert msg.msg.yes_price_dollars + msg.msg.no_price_dollars == 1
    assert last == {sid: seq for sid, seq in gen.seq.items() if seq}
    assert isinstance(m.decode(frames[-1]), m.Trade) and m.decode(frames[-1]).msg.trade_id == gen.last_trade_id
    return gen


def test_mixed_stream_is_valid_and_roughly_70_20_10() -> None:
    gen = _check("mixed", 20_000)
    data = 20_000 - gen.counts["orderbook_snapshot"]
    assert gen.counts["orderbook_snapshot"] == 50
    assert 0.65 < gen.counts["orderbook_delta"] / data < 0.75
    assert 0.15 < gen.counts["ticker"] / data < 0.25
    assert 0.07 < gen.counts["trade"] / data < 0.13


def test_trades_only_stream() -> None:
    gen = _check("trades", 5_000)
    assert gen.counts["trade"] == 5_000


def test_deterministic_and_runs_do_not_collide() -> None:
    a = FrameGenerator(StreamSpec(run=1)).take(1_000)
    b = FrameGenerator(StreamSpec(run=1)).take(1_000)
    c = FrameGenerator(StreamSpec(run=2)).take(1_000)
    assert a == b
    ids = {m.decode(f).msg.trade_id for f in a if b'"trade"' in f[:20]}
    assert ids.isdisjoint({m.decode(f).msg.trade_id for f in c if b'"trade"' in f[:20]})


def test_websocket_framing() -> None:
    for n in (0, 125, 126, 65_535, 65_536):
        frame = ws_text_frame(b"x" * n)
        assert frame[0] == 0x81 and frame.endswith(b"x" * n)
        assert len(frame) == n + (2 if n < 126 else 4 if n < 65_536 else 10)
    payloads = [b"y" * 300] * 10_000
    chunks = ws_chunks(payloads, chunk_bytes=100_000)
    assert b"".join(chunks) == b"".join(ws_text_frame(p) for p in payloads)
