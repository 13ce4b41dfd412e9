"""A real Prefect API server on loopback and the `prefect` CLI, for the end-to-end tests of prefect.yaml
(``test_deployment_e2e.py``, ``test_schedule_e2e.py``).

The server is ``prefect server start`` in a subprocess, on a free port, with its own ``PREFECT_HOME`` (its SQLite
database) under the test's ``tmp_path``; the CLI is the one of the virtualenv running the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
POOL = "kalshi-process"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run ``prefect ARGS`` from the checkout; its output, asserting it exited 0."""
    proc = await asyncio.create_subprocess_exec(PREFECT, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"prefect {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


async def api_get(env: dict[str, str], path: str) -> Any:
    """``GET`` ``path`` of the API ``env`` points at (its JSON): a read without starting a ``prefect`` CLI process."""
    async with httpx.AsyncClient(base_url=env["PREFECT_API_URL"], timeout=30) as client:
        response = await client.get(path)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def clean_environment() -> dict[str, str]:
    """This process's environment without Prefect settings nor the project's own variables (the tests set those)."""
    own = ("PREFECT_", "KALSHI_", "DATABASE_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(own)}


@contextlib.asynccontextmanager
async def prefect_server(home: Path, *, scheduler: bool) -> AsyncIterator[dict[str, str]]:
    """``prefect server start`` on a free loopback port; yields the environment of a client of it (``PWD`` is the
    checkout, for prefect.yaml's pull step). ``scheduler``: whether the server creates the runs of schedules."""
    port = free_port()
    env = clean_environment()
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=str(scheduler).lower(),
               PWD=str(ROOT))
    server = await asyncio.create_subprocess_exec(
        PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while True:
                if server.returncode is not None:
                    raise RuntimeError(f"prefect server exited with {server.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/api/health", timeout=2)).status_code == 200:
                        break
                if loop.time() > deadline:
                    raise TimeoutError("prefect server did not become healthy within 120 s")
                await asyncio.sleep(0.1)
        yield env
    finally:
        server.terminate()
        try:
            await asyncio.wait_for(server.wait(), 30)
        except TimeoutError:
            server.kill()
            await server.wait()
