"""A machine whose clock is off: the exchange's 401 is explained with its ``Date`` header (REST and handshake).

The requests are signed with a clock 42 s ahead (and 90 s behind) of the real one, against the real
simulator, which rejects timestamps outside its tolerance (5 s) and sends a ``Date`` header.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kalshi_ws.auth import Signer, signature_rejected_hint
from kalshi_ws.client import ClientOptions, KalshiWebSocketClient
from kalshi_ws.errors import AuthenticationError
from kalshi_ws.protocol import Subscription
from kalshi_ws.rest import KalshiRestClient, RestError
from kalshi_ws.simulator import Simulator


@dataclass(frozen=True)
class SkewedSigner(Signer):
    """Signs as a machine whose clock is ``skew_s`` seconds off would (positive: ahead)."""

    skew_s: float = 0.0

    def headers(self, method: str, path: str, *, timestamp_ms: int | None = None) -> dict[str, str]:
        return super().headers(method, path, timestamp_ms=int((time.time() + self.skew_s) * 1000))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(markets=2, seed=5, rate=0, rest_auth="required") as s:
        yield s


def _signer(sim: Simulator, skew_s: float) -> SkewedSigner:
    base = Signer.from_file(sim.key_id, sim.private_key_path)
    return SkewedSigner(base.key_id, base.private_key, skew_s=skew_s)


# The Date header has whole seconds and the request takes a moment: the figure said may be 1 s off either way.
@pytest.mark.parametrize(("skew", "said"), [(42.0, r"4[123] s ahead of"), (-90.0, r"(89|90|91) s behind")])
async def test_rest_401_says_the_clock_is_off_and_by_how_much(sim: Simulator, skew: float, said: str) -> None:
    async with KalshiRestClient(sim.rest_url, _signer(sim, skew), max_retries=0) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_exchange_status()
    message = str(info.value)
    assert info.value.status == 401
    assert re.match(f"the exchange rejected the request signature; this machine's clock is {said} "
                    r"the exchange's \(Date header\): sync it \(NTP\)", message), message
    assert "\n" not in message


async def test_rest_401_with_a_good_clock_points_at_the_key(sim: Simulator, tmp_path: Any) -> None:
    from kalshi_ws.auth import generate_key_pair

    _, other, _ = generate_key_pair(tmp_path)
    wrong = Signer.from_file(sim.key_id, other)  # right key id, wrong private key, right clock
    async with KalshiRestClient(sim.rest_url, wrong, max_retries=0) as rest:
        with pytest.raises(RestError) as info:
            await rest.get_exchange_status()
    assert "clock agrees with the exchange's" in str(info.value)
    assert "KALSHI_API_KEY_ID and the private key belong together" in str(info.value)


async def test_handshake_rejection_says_the_clock_is_ahead(sim: Simulator) -> None:
    class Sink:
        paused = False

        def on_message(self, *args: Any) -> None: ...

        def on_event(self, *args: Any) -> None: ...

        async def wait_resumed(self) -> None: ...

    client = KalshiWebSocketClient(sim.ws_url, Sink(), [Subscription("ticker")], signer=_signer(sim, 42.0),
                                   options=ClientOptions(backoff_initial=0.01, backoff_cap=0.02,
                                                         max_auth_rejections=2), rng=random.Random(1))
    with pytest.raises(AuthenticationError) as info:
        await client.run()
    assert info.value.status == 401
    assert re.search(r"the exchange rejected the request signature; this machine's clock is 4[123] s ahead of the "
                     r"exchange's \(Date header\): sync it \(NTP\)", str(info.value)), str(info.value)


def test_hint_without_a_date_header_still_mentions_the_clock() -> None:
    assert "clock is synchronised (NTP)" in signature_rejected_hint(None)
    assert "clock is synchronised (NTP)" in signature_rejected_hint("not a date")
