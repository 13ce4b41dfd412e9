"""Permanent database errors are not outages (issue 11, items 2, 3, 8).

* a value the database cannot store (NUL in a session's market set, a ticker, a ledger detail) goes to
  ``dead_letter``; the rest of the batch, the session and every later session are stored normally, also when
  the poison sits in a spill that a later recorder or ``kalshi-ingest db replay`` replays;
* a configuration error (wrong password, missing database, a role without privileges, missing schema, a
  malformed URL) fails fast with one redacted line naming ``DATABASE_URL``; an unreachable server still spills;
* no password reaches a log, an exception, the session row, dead_letter or a spill file.

Real embedded PostgreSQL: a private server whose pg_hba.conf asks every role but ``postgres`` for a password.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import storage_frames as f
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kalshi_store.dberrors import DatabaseConfigError, classify, redact, redact_url, url_without_password
from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.migrations import migrate
from kalshi_store.recorder import Recorder
from kalshi_store.spill import replay_spill_async
from kalshi_ws import events as ev

pytestmark = pytest.mark.asyncio

SECRET = "Zq9-HUNTER2-do-not-leak-7x"


def rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def closed_port_url() -> str:
    """A URL whose port nobody listens on (connection refused at once: a transient outage)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://kalshi:{SECRET}@127.0.0.1:{port}/kalshi"


def fast(url: str, spill: Path) -> Recorder:
    return Recorder(url, spill_dir=spill, batch_rows=200, flush_interval=0.05, write_timeout=2.0,
                    connect_timeout=1.0, retry_initial=0.05, retry_max=0.2)


async def record_poisoned(url: str, spill: Path) -> str:
    """A session whose manifest and ledger carry NUL (unstorable text), with 30 good trades and one poisoned."""
    async with fast(url, spill) as recorder:
        session_id = await recorder.open_session("weather\x00set", "simulator", ["OK-1", "BAD\x00TICKER"],
                                                 ["trade"])
        recorder.on_event(ev.Disconnected(at_ns=time.time_ns(), generation=1, incident_id=1,
                                          reason="server said \x00bye", will_reconnect=True))
        for i in range(30):
            recorder.on_message(f.trade(f"poison-run-{i}", seq=100 + i, market="OK-1"), 1, time.time_ns())
        recorder.on_message(f.trade("nul-trade", seq=200, market="OK\x00-1"), 1, time.time_ns())
        await recorder.close_session("completed")
    return session_id


async def record_clean(url: str, spill: Path, n: int = 10) -> tuple[str, str]:
    async with fast(url, spill) as recorder:
        session_id = await recorder.open_session("clean", "simulator", ["OK-1"], ["trade"])
        for i in range(n):
            recorder.on_message(f.trade(f"clean-{session_id}-{i}", seq=1 + i, market="OK-1"), 1, time.time_ns())
        await recorder.close_session("completed")
    (status,), = rows(url, "select status from kalshi.sessions where session_id = %s", (session_id,))
    return session_id, status


def assert_poison_isolated(url: str, session_id: str) -> None:
    (market_set, markets, status), = rows(
        url, "select market_set, markets, status from kalshi.sessions where session_id = %s", (session_id,))
    assert market_set == "weather\ufffdset" and markets == ["OK-1"]  # stored cleaned; the NUL ticker dropped
    assert status == "degraded"  # honest: part of it went to dead_letter
    trades = rows(url, "select trade_id from kalshi.trades where session_id = %s", (session_id,))
    assert len(trades) == 30
    dead = {r[0] for r in rows(url, "select type from kalshi.dead_letter where session_id = %s", (session_id,))}
    assert {"sessions", "gap_ledger", "trades"} <= dead
    (reason,), = rows(url, "select detail ->> 'reason' from kalshi.gap_ledger where session_id = %s", (session_id,))
    assert reason == "server said \ufffdbye"


async def test_poison_values_are_dead_lettered_and_the_rest_is_stored(db_url: str, tmp_path: Path) -> None:
    session_id = await record_poisoned(db_url, tmp_path / "spill")
    assert_poison_isolated(db_url, session_id)
    assert not list((tmp_path / "spill").rglob("*.spill")), "nothing may be left in the spill"


@pytest.fixture
def down_then_up(private_pg: EmbeddedPostgres) -> Iterator[tuple[str, Any]]:
    """A migrated database of the private server, stopped: (its URL, a function that starts the server again).
    A spill is only ever replayed into the database it was written for, so the outage must end on the same URL."""
    private_pg.start()
    name = f"poison_{uuid.uuid4().hex[:10]}"
    url = private_pg.create_database(name)
    migrate(url)
    private_pg.stop("fast")
    try:
        yield url, private_pg.start
    finally:
        private_pg.start()


async def test_a_poisoned_spill_blocks_no_later_session(down_then_up: tuple[str, Any], tmp_path: Path) -> None:
    url, start = down_then_up
    spill = tmp_path / "spill"
    # The database is away: the poisoned session goes to the spill, which the next recorder replays first.
    poisoned = await record_poisoned(url, spill)
    assert any(spill.iterdir())
    start()
    later, status = await record_clean(url, spill)
    assert status == "completed", "an earlier poison value degraded a later session"
    assert_poison_isolated(url, poisoned)
    assert len(rows(url, "select 1 from kalshi.trades where session_id = %s", (later,))) == 10
    assert not list(spill.rglob("*.spill")), "the orphaned spill must be replayed and removed"
    # And the next one too.
    _, status = await record_clean(url, spill)
    assert status == "completed"


async def test_db_replay_does_not_crash_on_poison(down_then_up: tuple[str, Any], tmp_path: Path) -> None:
    url, start = down_then_up
    spill = tmp_path / "spill"
    poisoned = await record_poisoned(url, spill)
    start()
    result = await replay_spill_async(url, spill)
    assert result.batches >= 1 and not result.skipped
    assert_poison_isolated(url, poisoned)
    again = await replay_spill_async(url, spill)  # safe to run again: nothing left
    assert again.batches == 0


# ============================================================================ configuration errors


@pytest.fixture(scope="module")
def auth_pg(private_pg: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """The private server asking every role but ``postgres`` for a password (scram), with roles and databases."""
    private_pg.start()
    with psycopg.connect(private_pg.url(), autocommit=True) as conn:
        hba_row = conn.execute("show hba_file").fetchone()
        assert hba_row is not None
        Path(hba_row[0]).write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        conn.execute("select pg_reload_conf()")
        conn.execute("set password_encryption = 'scram-sha-256'")
        conn.execute(f"create role recorder login password '{SECRET}'")  # test constant, not user input
        conn.execute(f"create role nopriv login password '{SECRET}'")
        conn.execute("create database kalshi_auth owner recorder")
        conn.execute("create database kalshi_unmigrated owner recorder")
    admin = as_user(private_pg, "postgres", "kalshi_auth")
    migrate(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("grant usage, create on schema kalshi to recorder")
        conn.execute("grant all on all tables in schema kalshi to recorder")
        conn.execute("grant all on all sequences in schema kalshi to recorder")
    yield private_pg


def as_user(server: EmbeddedPostgres, user: str, dbname: str, password: str = SECRET) -> str:
    params = conninfo_to_dict(server.url())
    params.update(user=user, password=password, dbname=dbname)
    return make_conninfo(**params)


def url_form(server: EmbeddedPostgres, user: str, dbname: str, password: str = SECRET) -> str:
    params = conninfo_to_dict(server.url())
    return f"postgresql://{user}:{password}@{params['host']}:{params['port']}/{dbname}"


async def config_error(url: str, spill: Path, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(DatabaseConfigError) as raised:
        async with fast(url, spill) as recorder:
            await recorder.open_session("x", "simulator", ["OK-1"], ["trade"])
            pytest.fail("recording started on a misconfigured database")
    assert time.monotonic() - started < 10, "a configuration error must fail fast, not retry"
    message = str(raised.value)
    shown = "".join(traceback.format_exception(raised.value))
    assert "\n" not in message and message.startswith("DATABASE_URL")
    for text in (message, shown, caplog.text):
        assert SECRET not in text
    assert not [p for p in spill.rglob("*") if p.is_file()], "nothing may be spilled for a configuration error"
    return message


async def test_wrong_password_is_a_configuration_error(auth_pg: EmbeddedPostgres, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    message = await config_error(url_form(auth_pg, "recorder", "kalshi_auth", password=SECRET + "-wrong"),
                                 tmp_path / "spill", caplog)
    assert "authentication failed" in message


async def test_missing_database_is_a_configuration_error(auth_pg: EmbeddedPostgres, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    message = await config_error(url_form(auth_pg, "recorder", "no_such_db"), tmp_path / "spill", caplog)
    assert "does not exist" in message


async def test_role_without_privileges_is_a_configuration_error(auth_pg: EmbeddedPostgres, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    message = await config_error(url_form(auth_pg, "nopriv", "kalshi_auth"), tmp_path / "spill", caplog)
    assert "privilege" in message


async def test_missing_schema_is_a_configuration_error(auth_pg: EmbeddedPostgres, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    message = await config_error(as_user(auth_pg, "recorder", "kalshi_unmigrated"), tmp_path / "spill", caplog)
    assert "kalshi-ingest db migrate" in message


async def test_malformed_url_is_a_configuration_error_without_the_password(
        auth_pg: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The SQLAlchemy spelling: libpq does not take it for a URL and echoes it whole in its error.
    url = url_form(auth_pg, "recorder", "kalshi_auth").replace("postgresql://", "postgresql+psycopg://")
    message = await config_error(url, tmp_path / "spill", caplog)
    assert "malformed" in message


async def test_an_unreachable_server_still_spills_and_leaks_no_password(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spill = tmp_path / "spill"
    async with fast(closed_port_url(), spill) as recorder:
        await recorder.open_session("x", "simulator", ["OK-1"], ["trade"])
        recorder.on_message(f.trade("unreachable-1", seq=1, market="OK-1"), 1, time.time_ns())
        await recorder.close_session("completed")
        last_error = recorder.stats().last_error
    assert last_error and "Connection refused" in last_error
    assert SECRET not in last_error and SECRET not in caplog.text
    files = [p for p in spill.rglob("*") if p.is_file()]
    assert files, "an outage must still spill"
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]


async def test_no_password_in_the_session_row_dead_letter_or_spill(
        auth_pg: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An error whose text echoes the connection string (as psycopg's do) is stored redacted."""
    caplog.set_level(logging.DEBUG)
    url = url_form(auth_pg, "recorder", "kalshi_auth")
    spill = tmp_path / "spill"
    with pytest.raises(RuntimeError):
        async with fast(url, spill) as recorder:
            session_id = await recorder.open_session("x", "simulator", ["OK-1"], ["trade"])
            recorder.on_message(f.trade(f"leak-{session_id}", seq=1, market="OK\x00-1"), 1, time.time_ns())
            raise RuntimeError(f"connection to {url} failed: missing \"=\" after \"{url}\"")
    (status, message), = rows(url, "select status, status_message from kalshi.sessions where session_id = %s",
                              (session_id,))
    assert status == "failed" and "***" in message and SECRET not in message
    with psycopg.connect(url) as conn:
        dump = conn.execute("select string_agg(t::text, '') from (select * from kalshi.dead_letter) t").fetchone()
        assert dump is not None and dump[0] and SECRET not in dump[0]
    assert SECRET not in caplog.text
    assert not [p for p in spill.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_redaction_covers_urls_conninfo_and_echoes() -> None:
    for url in (f"postgresql://u:{SECRET}@h:5432/db", f"postgresql+psycopg://u:{SECRET}@h/db",
                f"host=h user=u password={SECRET} dbname=d", f"host=h password='{SECRET} x' dbname=d",
                f"postgresql://u@h/db?password={SECRET}&sslmode=require"):
        assert SECRET not in redact_url(url)
        assert SECRET not in redact(f'missing "=" after "{url}" in connection info string')
    assert redact_url("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db"


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_classification() -> None:
    assert classify(psycopg.errors.UniqueViolation()) == "permanent"
    assert classify(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")) == "permanent"
    assert classify(psycopg.OperationalError("connection failed: Connection refused")) == "transient"
    assert classify(ConnectionResetError()) == "transient"
    assert classify(psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "u"')) == "config"
    assert classify(psycopg.OperationalError('connection failed: FATAL:  database "x" does not exist')) == "config"


async def test_cli_db_commands_show_one_redacted_line(
        auth_pg: EmbeddedPostgres, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`db migrate` / `db replay` with a malformed DATABASE_URL: one line, no password, no traceback; and
    `db replay` of a poisoned spill stores what it can instead of crashing."""
    import asyncio

    from kalshi_ingest.cli import main

    spill = tmp_path / "spill"
    await record_poisoned(closed_port_url(), spill)
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", str(tmp_path))
    malformed = url_form(auth_pg, "recorder", "kalshi_auth").replace("postgresql://", "postgresql+psycopg://")
    monkeypatch.setenv("DATABASE_URL", malformed)
    for command in (["db", "migrate"], ["db", "replay"]):
        assert await asyncio.to_thread(main, command) == 2
        captured = capsys.readouterr()
        assert SECRET not in captured.out + captured.err
        (line,) = captured.err.strip().splitlines()
        assert "DATABASE_URL" in line and "malformed" in line
    # A spill is replayed only into the database it was written for: another one gets one line and nothing.
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert await asyncio.to_thread(main, ["db", "replay"]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert "belongs to" in line and "not replayed" in line and SECRET not in line
    assert list(spill.rglob("*.spill")), "a spill that belongs elsewhere stays where it is"


async def test_a_url_shown_to_a_person_has_user_host_port_and_database_only() -> None:
    assert url_without_password(f"postgresql://u:{SECRET}@h:6543/db?sslmode=require") == "postgresql://u@h:6543/db"
    assert url_without_password(f"host=h dbname=db user=u password={SECRET}") == "postgresql://u@h:5432/db"
    assert url_without_password("postgresql://h/db") == "postgresql://h:5432/db"
