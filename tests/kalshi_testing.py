"""Helpers shared by the tests (importable as ``kalshi_testing``: tests/conftest.py puts this folder on sys.path).

``wait_until``
    Tests never sleep to "wait for something" (docs/ARCHITECTURE.md): they poll a condition with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition", *,
                     interval: float = 0.01, in_thread: bool = False) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it is true; ``TimeoutError`` naming ``what`` otherwise.

    ``predicate`` must be cheap and non-blocking, or pass ``in_thread=True`` (a database query, say) to run it in a
    worker thread so the event loop (the simulator, the client, the recorder under test) keeps running.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (await asyncio.to_thread(predicate) if in_thread else predicate()):
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout:.1f} s")
        await asyncio.sleep(interval)
