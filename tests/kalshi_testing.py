"""Helpers shared by the tests (importable as ``kalshi_testing``: tests/conftest.py puts this folder on sys.path).

``wait_until``
    Tests never sleep to "wait for something" (docs/ARCHITECTURE.md): they poll a condition with a timeout.
``embedded_server``
    A throwaway embedded PostgreSQL in a fresh ``/tmp/kalshi-test-*pg-*`` folder (the ``pg_server``/``private_pg``
    fixtures of tests/conftest.py and ``own_pg_server`` of tests/faults use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from kalshi_store.embedded import EmbeddedPostgres

#: Throwaway data: skip fsync so CREATE DATABASE, checkpoints and commits do not wait for the disk.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


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


_OWNER = "owner.pid"


def _reap_abandoned_servers() -> None:
    """Stop and delete test servers whose test run died without its teardown (killed by a timeout, say)."""
    for base in Path(tempfile.gettempdir()).glob("kalshi-test-*pg-*"):
        try:
            owner = int((base / _OWNER).read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        try:
            os.kill(owner, 0)
            continue  # its test run is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(Exception):
            EmbeddedPostgres(base / "data").stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def embedded_server(prefix: str = "kalshi-test-pg-", settings: dict[str, str] | None = None
                    ) -> Iterator[EmbeddedPostgres]:
    """A throwaway embedded server, stopped and deleted afterwards.

    Its folder is a fresh ``/tmp/<prefix>*``, not pytest's ``tmp_path``: the server runs as another user when the
    tests run as root, and every pytest run resets ``/tmp/pytest-of-<user>`` to mode 0700, which would lock the
    server out of its own folder. The folder records the test process's pid, so servers left by a run that was
    killed before its teardown are stopped by the next run. ``settings``: PostgreSQL settings (default: no fsync,
    no synchronous commit, no full-page writes, for throwaway data; pass ``{}`` where commits must survive an
    immediate stop).
    """
    _reap_abandoned_servers()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    (base / _OWNER).write_text(str(os.getpid()))
    server = EmbeddedPostgres(base / "data", settings=FAST_SETTINGS if settings is None else settings)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
