"""After a long seeded run, books rebuilt from raw WS snapshots + deltas equal the REST books and book_at()."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect

Book = dict[str, dict[Decimal, Decimal]]


def apply(books: dict[str, Book], f: dict[str, Any], yes_price: bool) -> None:
    msg = f["msg"]
    t = msg["market_ticker"]
    if f["type"] == "orderbook_snapshot":
        books[t] = {
            "yes": {Decimal(p): Decimal(q) for p, q in msg.get("yes_dollars_fp", [])},
            "no": {(1 - Decimal(p)) if yes_price else Decimal(p): Decimal(q) for p, q in msg.get("no_dollars_fp", [])},
        }
        return
    price = Decimal(msg["price_dollars"])
    if yes_price and msg["side"] == "no":
        price = 1 - price
    side = books[t][msg["side"]]
    size = side.get(price, Decimal(0)) + Decimal(msg["delta_fp"])
    if size <= 0:
        side.pop(price, None)
    else:
        side[price] = size


def as_rest(book: Book) -> dict[str, list[list[str]]]:
    return {f"{k}_dollars": [[f"{p:.4f}", f"{q:.2f}"] for p, q in sorted(book[k].items())] for k in ("yes", "no")}


async def test_rebuilt_books_match_rest_after_long_run() -> None:
    async with Simulator(markets=6, seed=42, rate=3000) as sim:
        plain, yes = Raw(await connect(sim)), Raw(await connect(sim))
        await plain.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers})
        await yes.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers,
                                     "use_yes_price": True})
        await plain.drain_until(lambda: len(plain.frames) > 6000, timeout=30)
        await sim.pause_market_activity()
        first, second = sorted(sim.connections)  # plain connected first
        final = {first: sim.connections[first].subs[1].seq, second: sim.connections[second].subs[1].seq}

        def last_seq(r: Raw) -> int:
            return max((f["seq"] for f in r.frames[-50:] if "seq" in f), default=0)

        await asyncio.gather(plain.drain_until(lambda: last_seq(plain) == final[first]),
                             yes.drain_until(lambda: last_seq(yes) == final[second]))
        rebuilt_plain: dict[str, Book] = {}
        rebuilt_yes: dict[str, Book] = {}
        seqs = []
        for f in plain.frames:
            if f["type"] in ("orderbook_snapshot", "orderbook_delta"):
                seqs.append(f["seq"])
                apply(rebuilt_plain, f, False)
        assert seqs == list(range(1, len(seqs) + 1))
        for f in yes.frames:
            if f["type"] in ("orderbook_snapshot", "orderbook_delta"):
                apply(rebuilt_yes, f, True)
        sub_penny = fractional = False
        for t in sim.tickers:
            assert as_rest(rebuilt_plain[t]) == sim.book(t), t
            assert as_rest(rebuilt_yes[t]) == sim.book(t), t
            for side in sim.book(t).values():
                for p, q in side:
                    sub_penny |= Decimal(p) % Decimal("0.01") != 0
                    fractional |= Decimal(q) % 1 != 0
        assert sub_penny and fractional
        # book_at(): replay the WS stream up to a time T in the middle of the run
        deltas = [f for f in plain.frames if f["type"] == "orderbook_delta"]
        cut = deltas[len(deltas) // 2]["msg"]["ts_ms"]
        partial: dict[str, Book] = {}
        for f in plain.frames:
            if f["type"] == "orderbook_snapshot" or (f["type"] == "orderbook_delta" and f["msg"]["ts_ms"] <= cut):
                apply(partial, f, False)
        for t in sim.tickers:
            assert as_rest(partial[t]) == sim.book_at(t, cut), t
        await plain.close()
        await yes.close()


async def test_model_is_deterministic_and_exact() -> None:
    from kalshi_ws.simulator import MarketModel

    a, b = MarketModel(5, seed=9), MarketModel(5, seed=9)
    for _ in range(3000):
        a.step()
        b.step()
    assert [(t["trade_id"], t["yes_price_dollars"], t["count_fp"]) for t in a.tape] == [
        (t["trade_id"], t["yes_price_dollars"], t["count_fp"]) for t in b.tape]
    assert all(a.book(t) == b.book(t) for t in a.tickers)
    c = MarketModel(5, seed=10)
    for _ in range(100):
        c.step()
    assert c.tape[0]["trade_id"] != a.tape[0]["trade_id"]
    named = MarketModel(["KXFOO-26DEC-T1", "KXBAR-26DEC-B2.5"], seed=1)
    assert named.tickers == ["KXFOO-26DEC-T1", "KXBAR-26DEC-B2.5"] and named.series == ["KXFOO", "KXBAR"]


async def test_book_at_checkpoints_agree_with_full_replay() -> None:
    from decimal import Decimal as D

    from kalshi_ws.simulator import MarketModel
    from kalshi_ws.simulator.model import levels

    model = MarketModel(2, seed=5)
    for i in range(15000):
        if i % 300 == 0:
            model._last_ms += 3  # spread exchange times
        model.step()
    mk = model.markets[model.tickers[0]]
    assert len(mk.checkpoints) >= 2
    times = sorted({e[0] for e in mk.log})
    for ts in [mk.initial_ms - 1, *times[:: max(1, len(times) // 25)], times[-1] + 1]:
        yes, no = dict(mk.initial_yes), dict(mk.initial_no)
        if ts < mk.initial_ms:
            yes, no = {}, {}
        else:
            for t, side, price, delta in mk.log:
                if t > ts:
                    break
                book = yes if side == "yes" else no
                size = book.get(price, D(0)) + delta
                if size <= 0:
                    book.pop(price, None)
                else:
                    book[price] = size
        assert model.book_at(mk.ticker, ts) == {"yes_dollars": levels(yes), "no_dollars": levels(no)}
    assert model.book_at(mk.ticker, times[-1]) == model.book(mk.ticker)
