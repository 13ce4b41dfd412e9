"""Settings: environments, and credential errors that name the variable to set without showing the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi_ingest.settings import DEFAULT_CONFIG, CredentialsError, Settings, newest_simulator_key
from kalshi_ws.auth import generate_key_pair

VARIABLES = ("KALSHI_ENV", "KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH", "KALSHI_PRIVATE_KEY_PEM",
             "KALSHI_PRIVATE_KEY_BLOCK", "KALSHI_WS_URL", "KALSHI_REST_URL", "DATABASE_URL",
             "KALSHI_INGEST_DATA_DIR", "KALSHI_INGEST_CONFIG", "KALSHI_SIMULATOR_DIR", "KALSHI_SESSION_LIMIT")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the per-user data folder, never the real one
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_the_local_simulator_and_embedded_database(tmp_path: Path) -> None:
    settings = Settings()
    env = settings.environment()
    assert env.name == "simulator"
    assert env.ws_url == "ws://127.0.0.1:8765/trade-api/ws/v2"
    assert settings.database() is None
    assert settings.data_dir == tmp_path / "home" / ".local" / "share" / "kalshi-ingest"
    assert settings.simulator_dir == settings.data_dir / "simulator"
    # the market sets installed with the package (in a checkout: the repository's file, mapped by pyproject)
    assert settings.config_path == DEFAULT_CONFIG
    assert DEFAULT_CONFIG.read_bytes() == (ROOT / "deployments" / "market_sets.yaml").read_bytes()


def test_the_data_folder_is_absolute_whatever_the_current_folder(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    # XDG rules: an absolute XDG_DATA_HOME is used, a relative one ignored.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().data_dir == tmp_path / "xdg" / "kalshi-ingest"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "kalshi-ingest"
    # An explicit folder wins; a relative one is taken from the current folder once, "~" is expanded.
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", "./.data")
    assert Settings().data_dir == tmp_path / ".data"
    assert Settings(kalshi_ingest_data_dir=Path("elsewhere")).data_dir == tmp_path / "elsewhere"
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", "~/kalshi")
    settings = Settings()
    assert settings.data_dir == tmp_path / "home" / "kalshi"
    assert settings.simulator_dir == tmp_path / "home" / "kalshi" / "simulator"
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", "")  # empty is unset
    assert Settings().data_dir == tmp_path / "home" / ".local" / "share" / "kalshi-ingest"
    monkeypatch.setenv("KALSHI_SIMULATOR_DIR", "keys-here")
    assert Settings().simulator_dir == tmp_path / "keys-here"


def test_market_set_file_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KALSHI_INGEST_CONFIG", "mine.yaml")
    assert Settings().config_path == tmp_path / "mine.yaml"
    monkeypatch.setenv("KALSHI_INGEST_CONFIG", "")
    assert Settings().config_path == DEFAULT_CONFIG


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
    folder = Settings().simulator_dir  # where `kalshi-ingest simulate` writes it: <data dir>/simulator
    assert newest_simulator_key(folder) is None
    key_id, _, _ = generate_key_pair(folder / "keys")
    assert (await Settings().signer()).key_id == key_id
