"""Every command, reply shape and error code of spec section 3/6, seq per sid."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

import pytest

from kalshi_ws import messages
from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect


def err(code: int):
    return lambda f: f.get("type") == "error" and f["msg"]["code"] == code


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        ({"id": 1, "cmd": "subscribe"}, 2),
        ({"id": 1, "cmd": "subscribe", "params": {}}, 3),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": []}}, 3),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": "ticker"}}, 1),
        ({"id": 1, "cmd": "unsubscribe", "params": {}}, 4),
        ({"id": 1, "cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
        ({"id": 1, "cmd": "frobnicate", "params": {}}, 5),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["multivariate"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["nope"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["pyth_value"], "underlying_tickers": ["X"]}}, 9),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
        ({"id": 1, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets"}}, 12),
        ({"id": 1, "cmd": "update_subscription", "params": {"action": "add_markets"}}, 12),
        ({"id": 1, "cmd": "update_subscription", "params": {"sid": 1, "sids": [1], "action": "add_markets"}}, 12),
        ({"id": 1, "cmd": "update_subscription", "params": {"sid": 1}}, 15),
        ({"id": 1, "cmd": "update_subscription", "params": {"sid": 42, "action": "add_markets"}}, 7),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["communications"], "shard_factor": 0}}, 19),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["communications"], "shard_key": 1}}, 20),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["communications"], "shard_factor": 2,
                                                   "shard_key": 2}}, 21),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["communications"], "shard_factor": 101,
                                                   "shard_key": 0}}, 22),
    ],
)
async def test_error_codes(idle_raw: Raw, cmd: dict, code: int) -> None:
    await idle_raw.ws.send(json.dumps(cmd))
    frame = await idle_raw.wait(lambda f: f.get("type") == "error")
    assert frame["msg"]["code"] == code
    assert frame["id"] == 1
    assert isinstance(messages.decode(json.dumps(frame)), messages.Error)


async def test_invalid_json_is_code_1(idle_raw: Raw) -> None:
    await idle_raw.ws.send("{not json")
    frame = await idle_raw.wait(lambda f: f.get("type") == "error")
    assert frame["msg"]["code"] == 1 and "id" not in frame


async def test_unsupported_action_13(idle_sim: Simulator, idle_raw: Raw) -> None:
    await idle_raw.send("subscribe", {"channels": ["trade", "market_lifecycle_v2"]})
    await idle_raw.collect(2, lambda f: f["type"] == "subscribed")
    i = await idle_raw.send("update_subscription", {"sid": 2, "action": "add_markets", "market_tickers": ["X"]})
    assert (await idle_raw.reply(i))["msg"]["code"] == 13
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "get_snapshot", "market_tickers": ["X"]})
    assert (await idle_raw.reply(i))["msg"]["code"] == 13
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "explode", "market_tickers": ["X"]})
    assert (await idle_raw.reply(i))["msg"]["code"] == 13


async def test_market_limit_26_and_rate_limit_27() -> None:
    async with Simulator(markets=4, rate=0, max_markets_per_subscription=2, max_commands_per_second=5) as sim:
        raw = Raw(await connect(sim))
        i = await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers[:3]})
        frame = await raw.reply(i)
        assert frame["msg"]["code"] == 26 and frame["msg"]["market_tickers"] == sim.tickers[2:3]
        i = await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers[:2]})
        await raw.reply(i)
        i = await raw.send("update_subscription", {"sid": 1, "action": "add_markets",
                                                   "market_tickers": sim.tickers[2:3]})
        assert (await raw.reply(i))["msg"]["code"] == 26
        for _ in range(5):
            await raw.send("list_subscriptions")
        await raw.wait(err(27))
        await raw.close()


async def test_subscribe_one_subscribed_per_channel_fresh_sids(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers
    i = await idle_raw.send("subscribe", {"channels": ["orderbook_delta", "ticker", "trade"], "market_tickers": t[:2]})
    await idle_raw.drain_until(lambda: len(idle_raw.frames) >= 5)
    acks = [f for f in idle_raw.frames if f["type"] == "subscribed"]
    assert [(a["id"], a["msg"]["channel"], a["msg"]["sid"]) for a in acks] == [
        (i, "orderbook_delta", 1), (i, "ticker", 2), (i, "trade", 3)]
    snaps = [f for f in idle_raw.frames if f["type"] == "orderbook_snapshot"]
    assert [f["type"] for f in idle_raw.frames[:3]] == ["subscribed", "orderbook_snapshot", "orderbook_snapshot"]
    assert [(s["sid"], s["seq"], s["msg"]["market_ticker"]) for s in snaps] == [(1, 1, t[0]), (1, 2, t[1])]
    # a second connection numbers its sids from 1 again
    other = Raw(await connect(idle_sim))
    await other.send("subscribe", {"channels": ["fill"]})
    assert (await other.wait(lambda f: f["type"] == "subscribed"))["msg"]["sid"] == 1
    await other.close()


async def test_resubscribe_is_idempotent_and_merges(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": t[:1]})
    await idle_raw.wait(lambda f: f["type"] == "orderbook_snapshot")
    i = await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": t[:2]})
    ack = await idle_raw.reply(i)
    assert ack["type"] == "subscribed" and ack["msg"]["sid"] == 1
    snap = await idle_raw.wait(lambda f: f["type"] == "orderbook_snapshot")
    assert snap["msg"]["market_ticker"] == t[1] and snap["seq"] == 2
    i = await idle_raw.send("list_subscriptions")
    assert (await idle_raw.reply(i))["msg"] == [{"channel": "orderbook_delta", "sid": 1}]
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "delete_markets", "market_tickers": ["nope"]})
    assert (await idle_raw.reply(i))["msg"] == {"market_tickers": t[:2]}


async def test_update_subscription_add_delete_get_snapshot(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": t[:1]})
    await idle_raw.wait(lambda f: f["type"] == "orderbook_snapshot")
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": t[1:3]})
    ok = await idle_raw.reply(i)
    assert ok == {"id": i, "sid": 1, "seq": 1, "type": "ok", "msg": {"market_tickers": t[:3]}}
    assert isinstance(messages.decode(json.dumps(ok)), messages.Ok)
    snaps = await idle_raw.collect(2, lambda f: f["type"] == "orderbook_snapshot")
    assert [(s["seq"], s["msg"]["market_ticker"]) for s in snaps] == [(2, t[1]), (3, t[2])]
    i = await idle_raw.send("update_subscription", {"sids": [1], "action": "get_snapshot", "market_tickers": [t[0]]})
    snap = await idle_raw.reply(i)
    assert snap["type"] == "orderbook_snapshot" and snap["seq"] == 4 and snap["sid"] == 1
    assert snap["msg"]["market_ticker"] == t[0]
    # get_snapshot does not change the subscription
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "delete_markets", "market_tickers": [t[1]]})
    assert (await idle_raw.reply(i))["msg"] == {"market_tickers": [t[0], t[2]]}
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "get_snapshot", "market_ticker": t[0]})
    assert (await idle_raw.reply(i))["type"] == "error"


async def test_ok_consumes_seq_option() -> None:
    async with Simulator(markets=2, rate=0, ok_consumes_seq=True) as sim:
        raw = Raw(await connect(sim))
        await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers[:1]})
        await raw.wait(lambda f: f["type"] == "orderbook_snapshot")
        i = await raw.send("update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": sim.tickers[1:]})
        assert (await raw.reply(i))["seq"] == 2
        assert (await raw.wait(lambda f: f["type"] == "orderbook_snapshot"))["seq"] == 3
        await raw.close()


@pytest.mark.parametrize("seq_scope", ["sid", "connection"])
async def test_seq_scope_option(seq_scope: str) -> None:
    """Spec 12.4, both readings: one stream per sid (the default) or one for the whole connection."""
    async with Simulator(markets=2, rate=0, seq_scope=seq_scope) as sim:  # type: ignore[arg-type]
        raw = Raw(await connect(sim))
        await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": sim.tickers})
        await raw.send("subscribe", {"channels": ["trade"]})
        await raw.collect(2, lambda f: f["type"] == "subscribed")
        sim.step(300)
        await raw.collect(3, lambda f: f["type"] == "trade")
        i = await raw.send("update_subscription", {"sid": 1, "action": "delete_markets",
                                                    "market_tickers": sim.tickers[1:]})
        ok = await raw.reply(i)
        await raw.close()
    before_ok = raw.frames[:raw.frames.index(ok)]
    sequenced = [f for f in before_ok if f["type"] in ("orderbook_snapshot", "orderbook_delta", "trade")]
    by_sid = {sid: [f["seq"] for f in sequenced if f["sid"] == sid] for sid in (1, 2)}
    assert len(by_sid[1]) >= 3 and len(by_sid[2]) >= 3
    if seq_scope == "sid":
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_sid.values())
        assert ok["seq"] == by_sid[1][-1]  # the sid's current position
    else:
        assert [f["seq"] for f in sequenced] == list(range(1, len(sequenced) + 1))
        assert ok["seq"] == sequenced[-1]["seq"]  # the connection's current position


async def test_skip_ticker_ack_and_initial_ticker(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers
    await idle_raw.send("subscribe", {"channels": ["ticker"], "market_tickers": t[:2], "send_initial_snapshot": True,
                                      "skip_ticker_ack": True})
    tickers = await idle_raw.collect(2, lambda f: f["type"] == "ticker")
    assert [x["msg"]["market_ticker"] for x in tickers] == t[:2]
    for x in tickers:
        assert "seq" not in x
        decoded = messages.decode(json.dumps(x))
        assert isinstance(decoded, messages.Ticker)
        for key in ("price_dollars", "yes_bid_dollars", "yes_ask_dollars", "volume_fp", "open_interest_fp",
                    "dollar_volume", "dollar_open_interest", "yes_bid_size_fp", "yes_ask_size_fp",
                    "last_trade_size_fp", "ts_ms", "ts", "time"):
            assert key in x["msg"]
    i = await idle_raw.send("update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": t[2:3],
                                                    "send_initial_snapshot": True})
    assert (await idle_raw.reply(i)) == {"id": i, "sid": 1, "type": "ok", "msg": {}}
    assert (await idle_raw.wait(lambda f: f["type"] == "ticker"))["msg"]["market_ticker"] == t[2]
    # ticker by market id: the ok lists ids
    ids = [idle_sim.model.markets[x].market_id for x in t]
    i = await idle_raw.send("subscribe", {"channels": ["ticker"], "market_ids": ids[:1]}, id=None)
    await idle_raw.reply(i)
    other = Raw(await connect(idle_sim))
    i = await other.send("subscribe", {"channels": ["ticker"], "market_ids": ids[:2]})
    assert (await other.reply(i))["msg"]["sid"] == 1
    i = await other.send("update_subscription", {"sid": 1, "action": "add_markets", "market_ids": ids[2:3]})
    assert (await other.reply(i))["msg"] == {"market_ids": ids[:3]}
    i = await other.send("update_subscription", {"sid": 1, "action": "add_markets", "market_ids": ["not-a-uuid"]})
    assert (await other.reply(i))["msg"]["code"] == 11
    await other.close()


async def test_use_yes_price_both_conventions(idle_sim: Simulator) -> None:
    t = idle_sim.tickers[0]
    a, b = Raw(await connect(idle_sim)), Raw(await connect(idle_sim))
    await a.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": t, "use_yes_price": False})
    await b.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": t, "use_yes_price": True})
    sa = await a.wait(lambda f: f["type"] == "orderbook_snapshot")
    sb = await b.wait(lambda f: f["type"] == "orderbook_snapshot")
    assert sa["msg"]["yes_dollars_fp"] == sb["msg"]["yes_dollars_fp"]
    no_leg = {Decimal(p): q for p, q in sa["msg"]["no_dollars_fp"]}
    yes_leg = {Decimal(p): q for p, q in sb["msg"]["no_dollars_fp"]}
    assert yes_leg == {1 - p: q for p, q in no_leg.items()}
    assert sa["msg"]["no_dollars_fp"] == idle_sim.book(t)["no_dollars"]
    # deltas on the NO side
    while True:
        idle_sim.step(20)
        try:
            da = await a.wait(lambda f: f["type"] == "orderbook_delta" and f["msg"]["side"] == "no", 0.2)
            break
        except TimeoutError:
            continue
    db = await b.wait(lambda f: f["type"] == "orderbook_delta" and f["seq"] == da["seq"])
    assert db["msg"]["side"] == "no" and db["msg"]["delta_fp"] == da["msg"]["delta_fp"]
    assert Decimal(db["msg"]["price_dollars"]) == 1 - Decimal(da["msg"]["price_dollars"])
    await a.close()
    await b.close()


async def test_list_and_unsubscribe_final_seq(idle_sim: Simulator, idle_raw: Raw) -> None:
    t = idle_sim.tickers
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": t})
    await idle_raw.send("subscribe", {"channels": ["trade"]})
    await idle_raw.send("subscribe", {"channels": ["fill"]})
    i = await idle_raw.send("list_subscriptions")
    assert (await idle_raw.reply(i))["msg"] == [{"channel": "orderbook_delta", "sid": 1},
                                                {"channel": "trade", "sid": 2}, {"channel": "fill", "sid": 3}]
    idle_sim.step(300)
    conn = next(iter(idle_sim.connections.values()))
    final = {s.sid: s.seq for s in conn.subs.values()}
    i = await idle_raw.send("unsubscribe", {"sids": [1, 2, 9]})
    frames = await idle_raw.collect(3, lambda f: f.get("id") == i)
    assert frames[0] == {"id": i, "sid": 1, "seq": final[1], "type": "unsubscribed"}
    assert frames[1] == {"id": i, "sid": 2, "seq": final[2], "type": "unsubscribed"}
    assert frames[2]["type"] == "error" and frames[2]["msg"]["code"] == 7
    assert isinstance(messages.decode(json.dumps(frames[0])), messages.Unsubscribed)
    # every sequenced frame of sid 1 and 2 before the unsubscribed was contiguous from 1
    for sid in (1, 2):
        seqs = [f["seq"] for f in idle_raw.frames if f.get("sid") == sid and f["type"] != "unsubscribed"]
        assert seqs == list(range(1, final[sid] + 1))


async def test_seq_per_sid_on_every_sequenced_channel(sim: Simulator, raw: Raw) -> None:
    await raw.send("subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": sim.tickers})
    await raw.send("subscribe", {"channels": ["market_lifecycle_v2", "multivariate_market_lifecycle",
                                              "communications", "order_group_updates", "ticker", "fill",
                                              "user_orders", "market_positions"]})
    await raw.drain_until(lambda: sum(1 for f in raw.frames if f.get("type") == "trade") >= 30, timeout=20)
    by_sid: dict[int, list[int]] = {}
    for f in raw.frames:
        if f["type"] in ("subscribed", "ok", "error", "unsubscribed"):
            continue
        decoded = messages.decode(json.dumps(f))
        assert not isinstance(decoded, messages.MalformedFrame | messages.UnknownMessage | messages.LegacyMessage), f
        if "seq" in f:
            by_sid.setdefault(f["sid"], []).append(f["seq"])
        else:
            assert f["type"] in ("ticker", "fill", "user_order", "market_position")
    for sid, seqs in by_sid.items():
        assert seqs == list(range(1, len(seqs) + 1)), sid


async def test_communications_user_filter_and_sharding(idle_sim: Simulator) -> None:
    everyone, mine = Raw(await connect(idle_sim)), Raw(await connect(idle_sim))
    shard0, shard1 = Raw(await connect(idle_sim)), Raw(await connect(idle_sim))
    await everyone.send("subscribe", {"channels": ["communications"]})
    await mine.send("subscribe", {"channels": ["communications"], "user_filter": "self"})
    await shard0.send("subscribe", {"channels": ["communications"], "shard_factor": 2, "shard_key": 0})
    await shard1.send("subscribe", {"channels": ["communications"], "shard_factor": 2, "shard_key": 1})
    for r in (everyone, mine, shard0, shard1):
        await r.wait(lambda f: f["type"] == "subscribed")
    idle_sim.step(3000)
    conn = idle_sim.connections[1]
    await everyone.drain_until(lambda: not conn.queue and conn.sent["subscribed"] + sum(
        conn.sent[k] for k in conn.sent if k.startswith(("rfq", "quote"))) == len(everyone.frames))
    data = everyone.frames[1:]
    assert sum(1 for f in data if f["type"] == "rfq_created") >= 3
    for k, shard in enumerate((shard0, shard1)):
        want = [f["msg"] for f in data if zlib.crc32(f["msg"]["market_ticker"].encode()) % 2 == k]
        assert want
        await shard.drain_until(lambda shard=shard, want=want: len(shard.frames) - 1 == len(want))
        assert [f["msg"] for f in shard.frames[1:]] == want
    rfq_types = ("rfq_created", "rfq_deleted")
    want_mine = [f["msg"] for f in data if f["type"] not in rfq_types or f["msg"]["creator_id"] == idle_sim.model.comm_id]
    await mine.drain_until(lambda: len(mine.frames) - 1 == len(want_mine))
    assert [f["msg"] for f in mine.frames[1:]] == want_mine
    own = [f for f in mine.frames if f["type"] in rfq_types]
    assert own and len(own) < sum(1 for f in data if f["type"] in rfq_types)
    for r in (everyone, mine, shard0, shard1):
        await r.close()


async def test_weird_params_always_get_an_answer(idle_sim: Simulator, idle_raw: Raw) -> None:
    weird: list[object] = [None, 0, -1, True, "x", [], [1], ["x"], {}, {"a": 1}, 1.5]
    t = idle_sim.tickers[0]
    await idle_raw.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": t})
    await idle_raw.wait(lambda f: f["type"] == "orderbook_snapshot")
    n = 0
    for cmd, base, keys in [
        ("subscribe", {"channels": ["ticker"]}, ["channels", "market_ticker", "market_tickers", "market_ids",
                                                  "send_initial_snapshot", "use_yes_price", "shard_factor"]),
        ("update_subscription", {"sid": 1, "action": "add_markets", "market_tickers": [t]},
         ["sid", "sids", "action", "market_tickers", "market_ticker"]),
        ("unsubscribe", {"sids": [5]}, ["sids"]),
    ]:
        for key in keys:
            for value in weird:
                i = await idle_raw.send(cmd, {**base, key: value})
                reply = await idle_raw.reply(i)
                assert reply["type"] in ("subscribed", "ok", "error", "unsubscribed", "orderbook_snapshot", "ticker")
                n += 1
    for bad_id in ("7", -3, 1.5):
        await idle_raw.ws.send(json.dumps({"id": bad_id, "cmd": "list_subscriptions"}))
        assert (await idle_raw.wait(lambda f: f["type"] == "error"))["msg"]["code"] == 1
    await idle_raw.ws.send(b"binary")
    assert (await idle_raw.wait(lambda f: f["type"] == "error"))["msg"]["code"] == 1
    assert n > 100 and idle_sim.errors == []


async def test_unknown_markets_silent_or_error_16() -> None:
    async with Simulator(markets=2, rate=0) as sim:
        raw = Raw(await connect(sim))
        i = await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": ["NOPE-1", sim.tickers[0]]})
        await raw.drain_until(lambda: len(raw.frames) >= 2)
        assert [f["type"] for f in raw.frames] == ["subscribed", "orderbook_snapshot"]
        assert raw.frames[1]["msg"]["market_ticker"] == sim.tickers[0]
        await raw.close()
    async with Simulator(markets=2, rate=0, unknown_market_error=True) as sim:
        raw = Raw(await connect(sim))
        i = await raw.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": ["NOPE-1", sim.tickers[0]]})
        err = await raw.reply(i)
        assert err["msg"] == {"code": 16, "msg": "Market not found", "market_tickers": ["NOPE-1"]}
        await raw.close()
