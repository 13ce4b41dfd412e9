"""Security rows of the fault matrix: parameterised SQL everywhere (static check), the kalshi_reader role reads
and cannot write, the private key is never a flow or deployment parameter, the key file's permissions are
checked, and decoding is bounded (oversized and absurdly nested frames are rejected without harm)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kalshi_ws import messages
from kalshi_ws.auth import Signer, generate_key_pair
from kalshi_ws.simulator import Simulator

from .harness import check_all, framed_session, scalar

ROOT = Path(__file__).resolve().parents[2]
#: Every package that talks to a database (tests excluded: fixtures build DDL with psycopg.sql).
SOURCE_DIRS = ["kalshi_ws", "kalshi_store", "kalshi_ingest", "flows", "bench"]
_EXECUTORS = {"execute", "executemany", "copy", "stream", "mogrify"}
_SECRETISH = ("key", "pem", "secret", "private", "signature", "password", "token", "credential")


def _is_formatted(node: ast.AST) -> bool:
    """An f-string with placeholders, ``"..." % x``, ``"...".format(...)`` or string concatenation with a
    non-literal: SQL built by string formatting."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        left_str = isinstance(node.left, ast.Constant) and isinstance(node.left.value, str | bytes)
        return left_str or _is_formatted(node.left) or _is_formatted(node.right)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)):
        return True
    return False


def _sql_formatting_sites(kind: str = "execute") -> list[str]:
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                first = node.args[0] if node.args else None
                if first is None:
                    continue
                if kind == "execute" and name in _EXECUTORS and _is_formatted(first):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}() with SQL built by formatting")
                if kind == "sql" and name == "SQL" and _is_formatted(first):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: sql.SQL() of a formatted string")
    return found


def test_static_no_sql_built_by_string_formatting() -> None:
    """Static check: no execute()/copy()/sql.SQL() call takes SQL built with an f-string, % or .format()."""
    # The checker itself catches each form it is meant to catch:
    for snippet in ('cur.execute(f"select {x}")', 'cur.execute("select %s" % x)', 'cur.execute("select {}".format(x))',
                    'conn.execute("select " + x)', 'sql.SQL(f"select {x}")'):
        call = ast.parse(snippet).body[0].value  # type: ignore[attr-defined]
        assert _is_formatted(call.args[0]), snippet
    for snippet in ('cur.execute("select %s", (x,))', 'cur.execute(sql.SQL("select {}").format(sql.Identifier(x)))'):
        call = ast.parse(snippet).body[0].value  # type: ignore[attr-defined]
        assert not _is_formatted(call.args[0]), snippet
    sites = _sql_formatting_sites("execute")
    assert not sites, "SQL built by string formatting:\n" + "\n".join(sites)


def test_static_no_sql_composed_from_f_strings() -> None:
    """``sql.SQL(f"...")`` defeats psycopg.sql's quoting; identifiers belong in sql.Identifier."""
    sites = _sql_formatting_sites("sql")  # kalshi_store/rows.py had 14 until 6befa40 (fault-matrix bug 4)
    assert not sites, "sql.SQL() of formatted strings:\n" + "\n".join(sites)


def test_reader_role_reads_and_cannot_write(db_url: str) -> None:
    login = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login password 'x' in role kalshi_reader").format(sql.Identifier(login)))
    params = conninfo_to_dict(db_url)
    params.update(user=login, password="x")
    url = make_conninfo(**params)  # type: ignore[arg-type]
    try:
        tables = [r[0] for r in psycopg.connect(db_url).execute(
            "select tablename from pg_tables where schemaname = 'kalshi' and tablename not like '%\\_p%' "
            "and tablename not like '%default' order by 1").fetchall()]
        assert {"trade_rows", "orderbook_delta_rows", "gap_ledger", "sessions", "dead_letter"} <= set(tables)
        with psycopg.connect(url, autocommit=True) as conn:
            for table in tables:
                conn.execute(sql.SQL("select * from kalshi.{} limit 1").format(sql.Identifier(table)))
            writes = [
                sql.SQL("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
                        "received_at, source) values ('x', current_date, 'M', 0.5, 0.5, 1, now(), 'ws')"),
                sql.SQL("update kalshi.sessions set status = 'failed'"),
                sql.SQL("delete from kalshi.gap_ledger"),
                sql.SQL("truncate kalshi.dead_letter"),
                sql.SQL("create table kalshi.evil (x int)"),
                sql.SQL("drop table kalshi.trade_rows"),
            ]
            for statement in writes:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop owned by {}").format(sql.Identifier(login)))
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))


def test_private_key_is_never_a_flow_or_deployment_parameter() -> None:
    from prefect import Flow

    import kalshi_flows.ingest as ingest

    flows_found = [obj for obj in vars(ingest).values() if isinstance(obj, Flow)]
    assert flows_found
    for f in flows_found:
        for name in inspect.signature(f.fn).parameters:
            assert not any(word in name.lower() for word in _SECRETISH), f"flow {f.name} takes {name!r}"
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in document.get("deployments") or []:
        for name, value in (deployment.get("parameters") or {}).items():
            assert not any(word in name.lower() for word in _SECRETISH), f"deployment parameter {name!r}"
            assert "PRIVATE KEY" not in str(value)
        job_vars = str((deployment.get("work_pool") or {}).get("job_variables") or {})
        assert "PRIVATE KEY" not in job_vars and "KALSHI_PRIVATE_KEY_PEM" not in job_vars


def test_key_file_permissions_are_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_id, key_path, _ = generate_key_pair(tmp_path / "keys")
    assert key_path.stat().st_mode & 0o077 == 0
    key_path.chmod(0o644)
    caplog.set_level(logging.WARNING)
    Signer.from_file(key_id, key_path)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "chmod 600" in warning
    for line in key_path.read_text().splitlines()[1:-1]:
        assert line not in warning


def test_decoding_is_bounded() -> None:
    deep = b'{"type":"ticker","sid":1,"msg":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"
    decoded = messages.decode(deep)
    assert isinstance(decoded, messages.MalformedFrame), type(decoded)
    big = b'{"type":"ticker","sid":1,"msg":{"pad":"' + b"x" * (messages.MAX_FRAME_BYTES + 10) + b'"}}'
    assert isinstance(messages.decode(big), messages.MalformedFrame)


async def test_absurd_nesting_and_oversized_frames_on_the_wire(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    """Frames nesting 100 000 levels deep and 2-8 MiB frames arrive mid-stream: each becomes a dead_letter row,
    the client keeps running on the same connection and every neighbouring trade is stored."""

    async def plan(s: Simulator) -> None:
        for i in range(3):
            await asyncio.sleep(0.8)
            for conn in list(s.connections.values()):
                depth = 100_000
                conn.put("nested", b'{"type":"trade","sid":2,"seq":1,"msg":' + b"[" * depth + b"]" * depth + b"}")
            s.inject("oversized", size=(2 + 3 * i) * 1024 * 1024)

    summary, window = await framed_session(sim, db_url, tmp_path / "data", duration=7, plan=plan)
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert summary.reconnects == 0, "a bad frame cost the connection"
    assert scalar(db_url, "select count(*) from kalshi.dead_letter where session_id = %s", summary.session_id) >= 6
