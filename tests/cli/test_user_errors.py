"""Every mistake in the setup ends in ONE line naming what to fix (exit 2, no traceback); bugs keep theirs.

The CLI runs as a subprocess, as a user would run it, with a clean environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kalshi_ingest.cli import main
from kalshi_store.continuity import SessionLink

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "kalshi_ingest.cli"]
VARIABLES = ("KALSHI_ENV", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH", "KALSHI_PRIVATE_KEY_PEM",
             "KALSHI_PRIVATE_KEY_BLOCK", "KALSHI_WS_URL", "KALSHI_REST_URL", "DATABASE_URL",
             "KALSHI_INGEST_DATA_DIR", "KALSHI_INGEST_CONFIG", "KALSHI_SIMULATOR_DIR", "KALSHI_SESSION_LIMIT")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def _cli(tmp_path: Path, *argv: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean.update(KALSHI_SIMULATOR_DIR=str(tmp_path / "no-sim"), KALSHI_INGEST_DATA_DIR=str(tmp_path / "data"), **env)
    result = subprocess.run([*CLI, *argv], capture_output=True, text=True, cwd=tmp_path, env=clean, timeout=120)
    return result.returncode, result.stderr


def _assert_one_line(code: int, stderr: str, *expected: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kalshi-ingest: error: "), stderr
    for text in expected:
        assert text in lines[0], stderr
    assert code == 2
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sets.yaml"
    path.write_text("market_sets:\n  cpi: {series: [KXCPI]}\n")
    return path


@pytest.mark.parametrize("duration", ["0", "-5", "nan", "inf", "1e12"])
def test_unusable_durations_are_refused(tmp_path: Path, config: Path, duration: str) -> None:
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), f"--duration={duration}")
    _assert_one_line(code, err, "--duration:", "not a usable session length", "at most 18000")


def test_unknown_environment_is_named_not_taken_for_a_missing_key(tmp_path: Path, config: Path) -> None:
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV="prodution")
    line = _assert_one_line(code, err, "KALSHI_ENV: unknown Kalshi environment 'prodution'", "production, demo")
    assert "KALSHI_API_KEY_ID" not in line


@pytest.mark.parametrize("url", ["ftp://exchange.example", "file:///etc/passwd"])
def test_base_urls_must_be_http_or_ws(tmp_path: Path, config: Path, url: str) -> None:
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV=url)
    _assert_one_line(code, err, "KALSHI_ENV:", "http://, https://, ws:// or wss://")


def test_ws_url_override_must_be_a_websocket_url(tmp_path: Path, config: Path) -> None:
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV="demo",
                     KALSHI_WS_URL="https://example.invalid/ws")
    _assert_one_line(code, err, "KALSHI_WS_URL:", "ws:// or wss://")


def test_encrypted_key_file_is_named_as_such(tmp_path: Path, config: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "encrypted.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pass phrase")))
    path.chmod(0o600)
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV="demo", KALSHI_API_KEY_ID="k",
                     KALSHI_PRIVATE_KEY_PATH=str(path))
    line = _assert_one_line(code, err, f"KALSHI_PRIVATE_KEY_PATH: file {path}", "encrypted")
    assert "TypeError" not in line


def test_key_path_that_is_a_directory(tmp_path: Path, config: Path) -> None:
    (tmp_path / "keys").mkdir()
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV="demo", KALSHI_API_KEY_ID="k",
                     KALSHI_PRIVATE_KEY_PATH=str(tmp_path / "keys"))
    _assert_one_line(code, err, f"KALSHI_PRIVATE_KEY_PATH: {tmp_path / 'keys'} is a directory")


def test_config_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("market_sets:\n  cpi: {series: [KXCPI]}  # caf\xe9\n".encode("latin-1"))
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(path))
    _assert_one_line(code, err, f"{path}: not UTF-8 text", "save the market-set file as UTF-8")


def test_exchange_that_cannot_be_reached(tmp_path: Path, config: Path) -> None:
    from kalshi_ws.auth import generate_key_pair

    key_id, private, _ = generate_key_pair(tmp_path / "k")
    code, err = _cli(tmp_path, "run", "cpi", "--config", str(config), KALSHI_ENV=f"http://127.0.0.1:{_closed_port()}",
                     KALSHI_API_KEY_ID=key_id, KALSHI_PRIVATE_KEY_PATH=str(private))
    _assert_one_line(code, err, "cannot reach the exchange at http://127.0.0.1:")


def test_migrate_against_a_closed_port_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://kalshi:sekret-pw@127.0.0.1:{_closed_port()}/kalshi"
    code, err = _cli(tmp_path, "db", "migrate", DATABASE_URL=url)
    _assert_one_line(code, err, "cannot use the database postgresql://kalshi@127.0.0.1:", "DATABASE_URL")
    assert "sekret-pw" not in err


def test_negative_keep_days(tmp_path: Path) -> None:
    code, err = _cli(tmp_path, "db", "retention", "--keep-days", "-1",
                     DATABASE_URL=f"postgresql://u@127.0.0.1:{_closed_port()}/db")
    _assert_one_line(code, err, "--keep-days: -1 is negative")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from kalshi_ws import simulator

    def broken(argv: object) -> int:
        raise ValueError("an internal bug")

    monkeypatch.setattr(simulator, "main", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["simulate"])


def test_an_os_error_that_names_no_file_is_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError is the user's to fix when it names a file; a connection reset inside the code is not."""
    from kalshi_ws import simulator

    def reset(argv: object) -> int:
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(simulator, "main", reset)
    with pytest.raises(ConnectionResetError):
        main(["simulate"])


@pytest.mark.parametrize(("argv", "expected"), [
    ([], "no command: give one of demo, run, simulate, db, report or bench"),
    (["db"], "no db command: give one of migrate, replay, retention or archive"),
    (["nope"], "unknown command 'nope': give one of demo, run"),
    (["db", "nope"], "unknown db command 'nope'"),
    (["run"], "MARKET_SET requires an argument"),
    (["db", "retention"], "--keep-days requires an argument"),
    (["db", "retention", "--keep-days", "many"], 'unable to convert "many" into int'),
    (["report", "--from", "yesterday"], "'yesterday' is not a time"),
    (["report", "--bar", "1 week"], "'1 week' is not a bar length"),
    (["demo", "--bogus"], "--bogus"),
])
def test_a_bad_command_line_is_one_line_naming_the_fix(tmp_path: Path, argv: list[str], expected: str) -> None:
    code, err = _cli(tmp_path, *argv)
    line = _assert_one_line(code, err, expected)
    assert line.endswith("--help)"), "the line says where to read the usage"


async def test_the_market_set_claim_tolerates_a_read_only_role(db_url: str) -> None:
    role = f"ro_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"create role {role} login password 'ro-pw'")  # noqa: S608  # a generated identifier
        conn.execute(f"grant usage on schema kalshi to {role}")
        conn.execute(f"grant select on kalshi.sessions to {role}")
    try:
        params = conninfo_to_dict(db_url)
        params.update(user=role, password="ro-pw")
        link = SessionLink(make_conninfo(**params), str(uuid.uuid4()), "cpi")
        now = datetime.now(UTC)
        claim = await link.claim(environment="test", markets=["X"], channels=["trade"], use_yes_price=False,
                                 planned_start=now, planned_end=now, slot_start=None, slot_end=now, flow_run_id=None)
        await link.close()
        assert not claim.reached and claim.duplicate_of is None
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")
