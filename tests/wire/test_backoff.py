"""Backoff: one capped, fully jittered exponential formula for every retry loop."""

from __future__ import annotations

import random

import pytest

from kalshi_ws.backoff import Backoff
from kalshi_ws.client import ClientOptions


class Extremes(random.Random):
    """A random source that always draws the top (or the bottom) of the range."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def test_bound_grows_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 2.0, 5.0)
    assert [backoff.bound(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.bound(10_000) == 5.0  # no overflow after a very long outage
    assert backoff.bound(-1) == 0.5


def test_delay_is_full_jitter_over_the_bound() -> None:
    assert [Backoff(0.5, 2.0, 5.0, rng=Extremes(top=True)).delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert Backoff(0.5, 2.0, 5.0, rng=Extremes(top=False)).delay(3) == 0.0
    delays = [Backoff(1.0, 2.0, 8.0, rng=random.Random(5)).delay(3) for _ in range(2)]
    assert delays[0] == delays[1] and 0.0 <= delays[0] <= 8.0  # a seeded source gives a reproducible schedule
    spread = Backoff(1.0, 2.0, 8.0, rng=random.Random(1))
    draws = [spread.delay(3) for _ in range(200)]
    assert min(draws) < 2.0 and max(draws) > 6.0  # spread over the whole window, not clustered at the bound


@pytest.mark.parametrize(("initial", "factor", "cap", "word"), [
    (0.0, 2.0, 1.0, "initial"), (1.0, 0.5, 4.0, "factor"), (2.0, 2.0, 1.0, "cap"),
])
def test_nonsense_settings_are_refused(initial: float, factor: float, cap: float, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        Backoff(initial, factor, cap)


def test_backoff_is_public_in_kalshi_ws() -> None:
    import kalshi_ws

    assert kalshi_ws.Backoff is Backoff and "Backoff" in kalshi_ws.__all__


def test_client_options_describe_a_backoff() -> None:
    options = ClientOptions(backoff_initial=0.25, backoff_factor=3.0, backoff_cap=2.0)
    backoff = options.backoff(Extremes(top=True))
    assert [backoff.delay(n) for n in range(4)] == [0.25, 0.75, 2.0, 2.0]
    assert [options.backoff_bound(n) for n in range(4)] == [0.25, 0.75, 2.0, 2.0]
