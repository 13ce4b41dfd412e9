"""Settings: environments, and credential errors that name the variable to set without showing the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi_ingest.settings import CredentialsError, Settings, newest_simulator_key
from kalshi_ws.auth import generate_key_pair

VARIABLES = ("KALSHI_ENV", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH", "KALSHI_PRIVATE_KEY_PEM",
             "KALSHI_PRIVATE_KEY_BLOCK", "KALSHI_WS_URL", "KALSHI_REST_URL", "DATABASE_URL",
             "KALSHI_INGEST_DATA_DIR", "KALSHI_INGEST_CONFIG", "KALSHI_SIMULATOR_DIR", "KALSHI_SESSION_LIMIT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_the_local_simulator_and_embedded_database() -> None:
    settings = Settings()
    env = settings.environment()
    assert env.name == "simulator"
    assert env.ws_url == "ws://127.0.0.1:8765/trade-api/ws/v2"
    assert settings.database() is None
    assert settings.data_dir == Path(".data")
    assert settings.config_path == Path("deployments/market_sets.yaml")


@pytest.mark.parametrize(("name", "host"), [("production", "external-api-ws.kalshi.com"),
                                            ("demo", "external-api-ws.demo.kalshi.co"),
                                            ("http://127.0.0.1:9999", "127.0.0.1:9999")])
def test_environments(monkeypatch: pytest.MonkeyPatch, name: str, host: str) -> None:
    monkeypatch.setenv("KALSHI_ENV", name)
    assert host in Settings().environment().ws_url


def test_url_overrides_and_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_ENV", "demo")
    monkeypatch.setenv("KALSHI_WS_URL", "wss://example.invalid/ws")
    assert Settings().environment().ws_url == "wss://example.invalid/ws"
    monkeypatch.setenv("KALSHI_ENV", "prod")
    with pytest.raises(ValueError, match="^KALSHI_ENV: unknown Kalshi environment 'prod'"):
        Settings().environment()


async def test_missing_key_id_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_ENV", "production")
    with pytest.raises(CredentialsError, match="KALSHI_API_KEY_ID is not set"):
        await Settings().signer()


async def test_missing_private_key_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_ENV", "production")
    monkeypatch.setenv("KALSHI_API_KEY_ID", "key-1")
    with pytest.raises(CredentialsError, match="KALSHI_PRIVATE_KEY_PATH.*KALSHI_PRIVATE_KEY_PEM.*KALSHI_PRIVATE_KEY_BLOCK"):
        await Settings().signer()


async def test_unreadable_key_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KALSHI_API_KEY_ID", "key-1")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(CredentialsError, match=r"^KALSHI_PRIVATE_KEY_PATH: private key file .*missing.pem does not exist"):
        await Settings().signer()


async def test_bad_pem_is_reported_without_its_content(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETTOPSECRET\n-----END RSA PRIVATE KEY-----\n"
    monkeypatch.setenv("KALSHI_API_KEY_ID", "key-1")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PEM", secret)
    with pytest.raises(CredentialsError, match="^KALSHI_PRIVATE_KEY_PEM: ") as error:
        await Settings().signer()
    assert "TOPSECRET" not in str(error.value)
    assert "TOPSECRET" not in repr(Settings())


async def test_key_from_file_and_pem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_id, private, _ = generate_key_pair(tmp_path / "keys")
    monkeypatch.setenv("KALSHI_API_KEY_ID", key_id)
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(private))
    assert (await Settings().signer()).key_id == key_id
    monkeypatch.delenv("KALSHI_PRIVATE_KEY_PATH")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PEM", private.read_text())
    assert (await Settings().signer()).key_id == key_id


async def test_local_simulator_key_is_found_without_configuration(tmp_path: Path) -> None:
    assert newest_simulator_key(tmp_path / ".kalshi-sim") is None
    key_id, _, _ = generate_key_pair(tmp_path / ".kalshi-sim" / "keys")
    assert (await Settings().signer()).key_id == key_id
