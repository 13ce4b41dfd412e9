"""A rejected key stops the session with a clear message and no retry storm; the private key and the request
signatures never appear in logs, exceptions, summaries or the database (pg_dump)."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import time
import traceback
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from kalshi_ingest.session import run_recording_session
from kalshi_store.embedded import _bin_path
from kalshi_ws.auth import generate_key_pair
from kalshi_ws.simulator import Simulator

from .harness import framed_session, market_set_for, settings_for

pytestmark = pytest.mark.timeout(120)

#: A base64 run this long is a signature (344 chars for RSA-2048) or key material, never a normal log token.
_LONG_B64 = re.compile(rb"[A-Za-z0-9+/]{200,}={0,2}")


def _client_side(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record of our process's client side (the simulator plays the exchange: its websockets
    server logs incoming headers, signatures included, at DEBUG - that is the exchange's log, not ours)."""
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if not r.name.startswith("kalshi_ws.simulator"))


def _pem_lines(path: Path) -> list[bytes]:
    return [line.strip() for line in path.read_bytes().splitlines() if line.strip() and b"-----" not in line]


def _pg_dump(url: str) -> bytes:
    params = conninfo_to_dict(url)
    out = subprocess.run(
        [str(_bin_path() / "pg_dump"), "-h", str(params.get("host", "127.0.0.1")), "-p", str(params["port"]),
         "-U", str(params.get("user", "postgres")), "-d", str(params["dbname"]), "--data-only"],
        capture_output=True, check=True, timeout=60)
    return out.stdout


def _assert_no_secret(blob: bytes, pem: list[bytes], where: str) -> None:
    for line in pem:
        assert line not in blob, f"a line of the private key appears in {where}"
    long_run = _LONG_B64.search(blob)
    assert long_run is None, f"a signature-like base64 run appears in {where}: {long_run.group()[:40]!r}..."


async def test_rejected_key_stops_without_a_storm_and_never_leaks(
        sim: Simulator, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, websockets' and httpx's header dumps included
    sim.inject("auth_reject", count=1000, mode="401")  # every handshake is rejected as a bad signature
    settings = settings_for(sim, tmp_path / "data")
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(run_recording_session(settings, market_set_for(sim), db_url, duration=30,
                                                     progress_interval=3600), 40)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert "401" in message or "auth" in message.lower(), message
    attempts = [h for h in sim.handshakes if h["status"] == 401]
    assert 1 <= len(attempts) <= 5, f"{len(attempts)} rejected handshakes: a retry storm"
    assert elapsed < 25, f"gave up only after {elapsed:.1f} s"
    status = await asyncio.to_thread(_one, db_url, "select status, status_message from kalshi.sessions")
    assert status is not None and status[0] == "failed", status
    pem = _pem_lines(sim.private_key_path)
    logs = _client_side(caplog)
    tb = "".join(traceback.format_exception(info.value))
    for where, blob in (("the logs", logs), ("the exception", tb + repr(info.value)), ("the session row", str(status))):
        _assert_no_secret(blob.encode(), pem, where)
    _assert_no_secret(await asyncio.to_thread(_pg_dump, db_url), pem, "pg_dump of the database")


async def test_unknown_key_is_a_clear_error(sim: Simulator, db_url: str, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A key the exchange does not know (REST answers 401 first): a clear error, no key material anywhere."""
    caplog.set_level(logging.DEBUG)
    key_id, key_path, _ = generate_key_pair(tmp_path / "other-key")
    settings = settings_for(sim, tmp_path / "data", key_id=key_id, key_path=key_path)
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(run_recording_session(settings, market_set_for(sim), db_url, duration=10,
                                                     progress_interval=3600), 30)
    text = str(info.value)
    assert "401" in text or "auth" in text.lower(), text
    pem = _pem_lines(key_path)
    logs = _client_side(caplog)
    _assert_no_secret((logs + "".join(traceback.format_exception(info.value))).encode(), pem, "logs/exception")


async def test_healthy_session_never_logs_or_stores_secrets(sim: Simulator, db_url: str, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A session with reconnects (every one a freshly signed handshake, plus REST backfills): no secret leaks."""
    caplog.set_level(logging.DEBUG)

    async def plan(s: Simulator) -> None:
        for _ in range(2):
            await asyncio.sleep(1.0)
            s.inject("close", mode="abort")

    summary, _ = await framed_session(sim, db_url, tmp_path / "data", duration=6, plan=plan)
    assert summary.reconnects >= 1
    pem = _pem_lines(sim.private_key_path)
    logs = _client_side(caplog)
    _assert_no_secret((logs + repr(summary.as_dict())).encode(), pem, "logs/summary")
    from kalshi_ingest.artifacts import session_markdown

    markdown = session_markdown(summary, None, [], [])
    _assert_no_secret(markdown.encode(), pem, "the session artifact (markdown)")
    _assert_no_secret(await asyncio.to_thread(_pg_dump, db_url), pem, "pg_dump of the database")


def _one(url: str, sql: str) -> tuple[object, ...] | None:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()
