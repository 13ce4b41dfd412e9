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


def test_archive_needs_a_destination_and_says_what_it_moved(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: object,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("KALSHI_ARCHIVE_URL", raising=False)
    assert main(["db", "archive"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kalshi-ingest: error: no archive destination: set KALSHI_ARCHIVE_URL or give --to (a folder or "
                   "an object-store URL)"]
    assert main(["db", "archive", "--to", str(tmp_path), "--older-than-days", "1"]) == 2
    assert "at least 2 days" in capsys.readouterr().err
    monkeypatch.setenv("KALSHI_ARCHIVE_URL", str(tmp_path))
    assert main(["db", "archive"]) == 0  # a fresh database has no partition older than 30 days
    assert capsys.readouterr().out.strip() == "nothing older than 30 days to archive"
