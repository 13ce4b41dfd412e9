"""`kalshi-ingest db ...` against a real PostgreSQL (DATABASE_URL = a fresh migrated test database)."""

from __future__ import annotations

import pytest

from kalshi_ingest.cli import main


def test_migrate_is_idempotent_and_prints_no_password(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["db", "migrate"]) == 0
    assert main(["db", "migrate"]) == 0
    out = capsys.readouterr().out
    assert out.count("database migrated: postgresql://") == 2
    assert "password" not in out


def test_retention_and_replay_run(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", str(tmp_path))
    assert main(["db", "retention", "--keep-days", "30"]) == 0
    assert main(["db", "replay"]) == 0
    out = capsys.readouterr().out
    assert "replayed" in out
