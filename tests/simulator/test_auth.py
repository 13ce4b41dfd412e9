"""Handshake and REST authentication."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from kalshi_ws.auth import Signer, generate_key_pair
from kalshi_ws.simulator import Simulator

from .conftest import Raw, connect, signer


async def _status(sim: Simulator, headers: dict[str, str], path: str | None = None) -> tuple[int, bytes]:
    url = sim.ws_url if path is None else f"ws://{sim.host}:{sim.port}{path}"
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(url, additional_headers=headers)
    resp = info.value.response
    return resp.status_code, resp.body


async def test_good_key_connects(sim: Simulator) -> None:
    ws = await connect(sim)
    raw = Raw(ws)
    cid = await raw.send("list_subscriptions")
    assert (await raw.reply(cid)) == {"id": cid, "type": "ok", "msg": []}
    await ws.close()


async def test_bad_signature_is_401_json(sim: Simulator, tmp_path) -> None:
    _, other, _ = generate_key_pair(tmp_path)
    headers = Signer.from_file(sim.key_id, other).websocket_headers()  # right key id, wrong private key
    status, body = await _status(sim, headers)
    assert status == 401
    assert json.loads(body) == {"error": {"code": "authentication_error", "message": "authentication_error",
                                          "details": "rpc error: code = Unauthenticated desc = "
                                                     "INCORRECT_API_KEY_SIGNATURE"}}


async def test_unknown_key_is_401_not_found(sim: Simulator, tmp_path) -> None:
    kid, priv, _ = generate_key_pair(tmp_path)
    status, body = await _status(sim, Signer.from_file(kid, priv).websocket_headers())
    assert status == 401
    assert json.loads(body)["error"]["details"].endswith("NOT_FOUND")


async def test_stale_timestamp_is_401(sim: Simulator) -> None:
    import time

    headers = signer(sim).headers("GET", "/trade-api/ws/v2", timestamp_ms=time.time_ns() // 1_000_000 - 60_000)
    status, body = await _status(sim, headers)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "authentication_error"


async def test_wrong_path_signed_or_seconds_timestamp_is_401(sim: Simulator) -> None:
    import time

    s = signer(sim)
    assert (await _status(sim, s.headers("GET", "/trade-api/v2/ws")))[0] == 401
    headers = s.headers("GET", "/trade-api/ws/v2", timestamp_ms=int(time.time()))  # seconds, not ms
    assert (await _status(sim, headers))[0] == 401


async def test_missing_headers_is_401_and_other_path_404(sim: Simulator) -> None:
    assert (await _status(sim, {}))[0] == 401
    assert (await _status(sim, signer(sim).websocket_headers(), "/trade-api/ws/v3"))[0] == 404


async def test_injected_auth_rejects_401_then_403(sim: Simulator) -> None:
    sim.inject("auth_reject", count=1)
    sim.inject("auth_reject", mode="403")
    status, _ = await _status(sim, signer(sim).websocket_headers())
    assert status == 401
    status, body = await _status(sim, signer(sim).websocket_headers())
    assert status == 403 and body == b"Forbidden\n"
    ws = await connect(sim)  # the next one passes
    await ws.close()
    assert [f["kind"] for f in sim.faults_injected] == ["auth_reject", "auth_reject"]


async def test_registered_public_key(tmp_path) -> None:
    kid, priv, pub = generate_key_pair(tmp_path)
    async with Simulator(markets=1, rate=0, public_keys={kid: pub}) as sim:
        ws = await websockets.connect(sim.ws_url, additional_headers=Signer.from_file(kid, priv).websocket_headers())
        await ws.close()


async def test_session_limit(tmp_path) -> None:
    async with Simulator(markets=1, rate=0, max_sessions_per_key=2) as sim:
        a = await connect(sim)
        b = await connect(sim)
        status, _ = await _status(sim, signer(sim).websocket_headers())
        assert status == 429
        await a.close()
        await sim.wait_for(lambda: len(sim.connections) == 1)
        c = await connect(sim)
        await b.close()
        await c.close()


async def test_rest_auth(sim: Simulator) -> None:
    path = "/trade-api/v2/markets"
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        assert (await client.get(path)).status_code == 401
        ok = await client.get(path, params={"limit": 1}, headers=signer(sim).headers("GET", path + "?limit=1"))
        assert ok.status_code == 200
        bad = await client.get(path, headers=signer(sim).headers("GET", "/trade-api/v2/events"))
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "authentication_error"


async def test_rest_auth_optional_mode() -> None:
    async with Simulator(markets=1, rate=0, rest_auth="optional") as sim, httpx.AsyncClient() as client:
        r = await client.get(f"{sim.rest_url}/markets/{sim.tickers[0]}/orderbook")
        assert r.status_code == 200
