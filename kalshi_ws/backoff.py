"""Retry delays: capped exponential backoff with full jitter.

One formula for every retry loop (the WebSocket reconnect, REST retries, the storage layer's reconnect):
after ``n`` consecutive failures wait ``uniform(0, min(cap, initial * factor**n))``. Full jitter spreads the
retries of many clients that failed together (an exchange restart) over the whole window instead of letting
them return in waves; the cap bounds how long a long outage goes unnoticed once the peer is back.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]

#: Beyond this many failures the bound is the cap anyway; clamping keeps ``factor ** n`` finite.
_MAX_EXPONENT = 64


class Backoff:
    """Delays for consecutive failures: :meth:`delay` ``(n)`` is uniform in ``[0, bound(n)]``.

    ``initial`` is the bound after the first failure (``n = 0``); ``factor`` its growth per further
    failure; ``cap`` the largest bound. ``rng`` is the random source (pass a seeded ``random.Random`` in
    tests for a reproducible schedule); it is shared, not copied.
    """

    __slots__ = ("cap", "factor", "initial", "rng")

    def __init__(self, initial: float = 0.5, factor: float = 2.0, cap: float = 30.0, *,
                 rng: random.Random | None = None) -> None:
        if initial <= 0:
            raise ValueError(f"backoff initial delay must be > 0, got {initial!r}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1 (delays never shrink), got {factor!r}")
        if cap < initial:
            raise ValueError(f"backoff cap ({cap!r}) must be >= its initial delay ({initial!r})")
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.rng = rng if rng is not None else random.Random()

    def bound(self, failures: int) -> float:
        """The largest delay after ``failures`` consecutive failures (0: the first retry)."""
        return min(self.cap, self.initial * self.factor ** min(max(failures, 0), _MAX_EXPONENT))

    def delay(self, failures: int) -> float:
        """A delay drawn uniformly from ``[0, bound(failures)]`` (full jitter)."""
        return self.rng.uniform(0.0, self.bound(failures))

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial!r}, factor={self.factor!r}, cap={self.cap!r})"
