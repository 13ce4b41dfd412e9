"""Process settings, read from the environment (and nothing else) with pydantic-settings.

Every variable is optional until something needs it: a missing credential is reported only when a
session has to sign a request, and the error names the variable to set. Secrets (the PEM, a database
password) are ``SecretStr`` so they never appear in a ``repr``, a log line or a Prefect parameter.

=============================  ====================================================================
``KALSHI_ENV``                 ``production``, ``demo``, ``production-shared``, ``demo-shared``,
                               ``simulator`` (the local simulator, the default) or a base URL
``KALSHI_API_KEY_ID``          the API key id (a UUID shown in Kalshi's UI)
``KALSHI_PRIVATE_KEY_PATH``    a PEM file (mode 0600) with the RSA private key
``KALSHI_PRIVATE_KEY_PEM``     the PEM text itself (for containers that inject secrets as env)
``KALSHI_PRIVATE_KEY_BLOCK``   the name of a Prefect ``Secret`` block holding the PEM
``KALSHI_WS_URL``              overrides the environment's WebSocket URL
``KALSHI_REST_URL``            overrides the environment's REST URL
``DATABASE_URL``               ``postgresql://...``; unset -> an embedded PostgreSQL in the data dir
``KALSHI_INGEST_DATA_DIR``     where the embedded database, spill files and simulator keys live
                               (default ``$XDG_DATA_HOME/kalshi-ingest`` or ``~/.local/share/kalshi-ingest``;
                               always made absolute)
``KALSHI_INGEST_CONFIG``       the market-set file (default: the ``market_sets.yaml`` installed with the
                               package, from ``deployments/`` in the repository)
``KALSHI_SIMULATOR_DIR``       the local simulator's key folder (default ``<data dir>/simulator``)
``KALSHI_ARCHIVE_URL``         where the archive tier's Parquet files go: a folder or an object-store URL
                               (``s3://bucket/prefix``...); unset: nothing is archived, reads use the hot tables
``KALSHI_ARCHIVE_AFTER_DAYS``  day partitions older than this many days are archived (default 30, at least 2)
=============================  ====================================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kalshi_ingest.config import MAX_SESSION_SECONDS
from kalshi_ws.auth import PrivateKeyError, Signer
from kalshi_ws.environments import Environment, resolve

#: Where ``kalshi-ingest simulate`` listens unless told otherwise.
SIMULATOR_URL: Final = "http://127.0.0.1:8765"


def default_data_dir() -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/kalshi-ingest``, else ``~/.local/share/kalshi-ingest``.

    The XDG base-directory rules: a relative ``XDG_DATA_HOME`` is ignored. The result is absolute, so a
    deployment means the same folder on every worker host and after every redeploy, whatever the current folder.
    """
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "kalshi-ingest"


def absolute(path: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current folder and normalised."""
    return Path(os.path.abspath(path.expanduser()))


def _default_config() -> Path:
    """``kalshi_ingest/deployments/market_sets.yaml`` when installed from the wheel (package data), else the
    checkout's ``deployments/market_sets.yaml`` (an editable install: the same file, mapped by pyproject.toml)."""
    here = Path(__file__).resolve().parent
    packaged = here / "deployments" / "market_sets.yaml"
    return packaged if packaged.is_file() else here.parent / "deployments" / "market_sets.yaml"


#: The market-set file used when ``KALSHI_INGEST_CONFIG`` is not set: the one installed with the package.
DEFAULT_CONFIG: Final = _default_config()


#: Every value ``KALSHI_ENV`` accepts besides a base URL.
ENVIRONMENT_NAMES: Final = ("production", "demo", "production-shared", "demo-shared", "simulator")


class CredentialsError(RuntimeError):
    """No usable API key: the message names the environment variable(s) to set."""


class SettingsError(ValueError):
    """An environment variable (or an option standing for one) has a value that cannot work; the message
    names it and says what to set."""


class Settings(BaseSettings):
    """The process environment, typed. Build one with ``Settings()``; every field maps to an env var."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    kalshi_env: str = Field(default="simulator", description="environment name or base URL")
    kalshi_api_key_id: str | None = None
    kalshi_private_key_path: Path | None = None
    kalshi_private_key_pem: SecretStr | None = None
    kalshi_private_key_block: str | None = None
    kalshi_ws_url: str | None = None
    kalshi_rest_url: str | None = None
    database_url: SecretStr | None = None
    #: Always absolute (a relative value is taken from the current folder once, here): the embedded database,
    #: spill files, reports, the local Prefect home and the simulator's key live under it.
    kalshi_ingest_data_dir: Path = Field(default_factory=default_data_dir)
    #: ``None``: the market-set file installed with the package (:data:`DEFAULT_CONFIG`).
    kalshi_ingest_config: Path | None = None
    #: Where ``kalshi-ingest simulate`` writes its generated key pair and where a run against the local
    #: simulator looks for it; ``None``: ``<data dir>/simulator``.
    kalshi_simulator_dir: Path | None = None
    #: Name of a Prefect global concurrency limit that every session holds one slot of (e.g. one limit per
    #: API key, ``prefect gcl create kalshi-ws-sessions --limit 4``); unset = no limit.
    kalshi_session_limit: str | None = None
    #: What one ``seq`` counts on the exchange's WebSocket: per subscription (``sid``, the protocol reference's
    #: reading) or per connection. The session never guesses: if the exchange numbers the other way, every session
    #: says so (gap ledger kind ``seq_scope``, status message) and this is the setting to change.
    kalshi_seq_scope: Literal["sid", "connection"] = "sid"
    #: The archive tier (kalshi_store.archive): a folder or an object-store URL; unset: no archive.
    kalshi_archive_url: str | None = None
    #: Day partitions older than this are moved to the archive by the daily archive deployment.
    kalshi_archive_after_days: int = Field(default=30, ge=2)

    @field_validator("kalshi_ingest_data_dir", mode="before")
    @classmethod
    def _data_dir_or_default(cls, value: object) -> object:
        return default_data_dir() if value is None or value == "" else value

    @field_validator("kalshi_ingest_config", "kalshi_simulator_dir", "kalshi_archive_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("kalshi_ingest_data_dir", "kalshi_ingest_config", "kalshi_simulator_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute(value)

    @property
    def data_dir(self) -> Path:
        return self.kalshi_ingest_data_dir

    @property
    def config_path(self) -> Path:
        return self.kalshi_ingest_config or DEFAULT_CONFIG

    @property
    def simulator_dir(self) -> Path:
        return self.kalshi_simulator_dir or self.data_dir / "simulator"

    @property
    def is_simulator(self) -> bool:
        return self.kalshi_env == "simulator"

    def environment(self) -> Environment:
        """Where to connect; :class:`SettingsError` names the variable (``KALSHI_ENV``, ``KALSHI_WS_URL``,
        ``KALSHI_REST_URL``) whose value is not understood."""
        name = SIMULATOR_URL if self.is_simulator else self.kalshi_env
        try:
            resolve(name)
        except ValueError as exc:
            if "://" in name or ":" in name:
                raise SettingsError(f"KALSHI_ENV: {exc}") from None
            raise SettingsError(
                f"KALSHI_ENV: unknown Kalshi environment {name!r}: set it to one of {', '.join(ENVIRONMENT_NAMES)} "
                "or a base URL such as http://127.0.0.1:8765") from None
        for variable, url in (("KALSHI_WS_URL", self.kalshi_ws_url), ("KALSHI_REST_URL", self.kalshi_rest_url)):
            try:
                resolve(name, **{variable.lower().removeprefix("kalshi_"): url})
            except ValueError as exc:
                raise SettingsError(f"{variable}: {exc}") from None
        env = resolve(name, ws_url=self.kalshi_ws_url, rest_url=self.kalshi_rest_url)
        if self.is_simulator:
            env = Environment("simulator", env.ws_url, env.rest_url)
        return env

    def database(self) -> str | None:
        """``DATABASE_URL`` or ``None`` (then the caller starts the embedded PostgreSQL)."""
        return self.database_url.get_secret_value() if self.database_url else None

    async def signer(self) -> Signer:
        """The request signer, from the first key source that is set (file, PEM, Prefect Secret block).

        Against the local simulator with no key configured, the key ``kalshi-ingest simulate`` generated
        (``<data dir>/simulator/keys``, or ``KALSHI_SIMULATOR_DIR``) is used. Raises :class:`CredentialsError` naming the variable to set; the key
        never appears in a message.
        """
        self.environment()  # a garbled KALSHI_ENV is the problem to report, not the key that goes with it
        key_id = self.kalshi_api_key_id
        published = self._simulator_key() if key_id is None else None
        if published is not None:
            return _from_file(published[0], published[1], f"the key of the local simulator in {published[1].parent}")
        if not key_id:
            hint = (f"start `kalshi-ingest simulate` first, with the same KALSHI_INGEST_DATA_DIR (no simulator key in "
                    f"{self.simulator_dir / 'keys'}), or " if self.is_simulator else "")
            raise CredentialsError(
                f"KALSHI_API_KEY_ID is not set: {hint}set it to your API key id for {self.kalshi_env!r} "
                "(and one of KALSHI_PRIVATE_KEY_PATH, KALSHI_PRIVATE_KEY_PEM or KALSHI_PRIVATE_KEY_BLOCK)"
            )
        if self.kalshi_private_key_path is not None:
            return _from_file(key_id, self.kalshi_private_key_path, "KALSHI_PRIVATE_KEY_PATH")
        if self.kalshi_private_key_pem is not None:
            try:
                return Signer.from_pem(key_id, self.kalshi_private_key_pem.get_secret_value(),
                                       source="KALSHI_PRIVATE_KEY_PEM")
            except PrivateKeyError as exc:
                raise CredentialsError(f"KALSHI_PRIVATE_KEY_PEM: {exc}") from None
        if self.kalshi_private_key_block:
            try:
                return Signer.from_pem(key_id, await _secret_block(self.kalshi_private_key_block),
                                       source=f"Prefect Secret block {self.kalshi_private_key_block!r}")
            except PrivateKeyError as exc:
                raise CredentialsError(f"KALSHI_PRIVATE_KEY_BLOCK: {exc}") from None
        raise CredentialsError(
            "no private key configured: set KALSHI_PRIVATE_KEY_PATH (a PEM file), KALSHI_PRIVATE_KEY_PEM "
            "(the PEM text) or KALSHI_PRIVATE_KEY_BLOCK (a Prefect Secret block name)"
        )

    def _simulator_key(self) -> tuple[str, Path] | None:
        if not self.is_simulator:
            return None
        return newest_simulator_key(self.simulator_dir)


async def check_exchange_access(settings: Settings) -> None:
    """Before a session: the environment resolves, the key loads, and one signed REST request is accepted.

    Raises :class:`SettingsError` / :class:`CredentialsError` with one line saying what to fix (an unknown
    ``KALSHI_ENV``, an unreadable key, an exchange that cannot be reached, a rejected signature: a wrong key
    or a wrong clock). Other answers (the exchange failing, rate limits) are left to the session, which
    retries them. A key kept in a Prefect Secret block is checked by the flow instead (it needs Prefect).
    """
    from kalshi_ws.rest import KalshiRestClient, RestError

    env = settings.environment()
    if (settings.kalshi_private_key_block and settings.kalshi_api_key_id and settings.kalshi_private_key_path is None
            and settings.kalshi_private_key_pem is None):
        return
    signer = await settings.signer()
    try:
        async with KalshiRestClient(env.rest_url, signer, max_retries=0, timeout=10) as rest:
            await rest.get_exchange_status()
    except RestError as exc:
        if exc.status == 0:
            hint = ("start `kalshi-ingest simulate` first, or set KALSHI_ENV" if settings.is_simulator
                    else "check KALSHI_ENV / KALSHI_REST_URL and the network")
            raise SettingsError(f"cannot reach the exchange at {env.rest_url} ({exc.message}): {hint}") from None
        if exc.status == 401:
            raise CredentialsError(f"{env.name} ({env.rest_url}): {exc}") from None
        if exc.status == 403:
            raise CredentialsError(f"{env.name} ({env.rest_url}) refused the request with HTTP 403 (often a CDN rule "
                                   "or a blocked network): check KALSHI_ENV / KALSHI_REST_URL") from None


def session_duration(value: float | None, *, option: str = "--duration") -> float | None:
    """``value`` if it is a usable session length in seconds (``None``: the market set's own); otherwise
    :class:`SettingsError` naming ``option`` and the allowed range (0, MAX_SESSION_SECONDS]."""
    if value is None:
        return None
    if not math.isfinite(value) or not 0 < value <= MAX_SESSION_SECONDS:
        raise SettingsError(f"{option}: {value:g} is not a usable session length: give seconds, more than 0 and at "
                            f"most {MAX_SESSION_SECONDS:g} ({MAX_SESSION_SECONDS / 3600:g} h)")
    return float(value)


def newest_simulator_key(simulator_dir: Path) -> tuple[str, Path] | None:
    """The key pair ``kalshi-ingest simulate`` generated last (``<dir>/keys/<key_id>.key``)."""
    keys = sorted((simulator_dir / "keys").glob("*.key"), key=lambda p: p.stat().st_mtime)
    return (keys[-1].stem, keys[-1]) if keys else None


def _from_file(key_id: str, path: Path, variable: str) -> Signer:
    try:
        return Signer.from_file(key_id, path)
    except PrivateKeyError as exc:
        raise CredentialsError(f"{variable}: {exc}") from None


async def _secret_block(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        block: Secret[Any] = await Secret.aload(name)
    except ValueError as exc:
        raise CredentialsError(f"KALSHI_PRIVATE_KEY_BLOCK: Prefect Secret block {name!r} not found ({exc})") from None
    value: object = block.get()
    if not isinstance(value, str):
        raise CredentialsError(f"KALSHI_PRIVATE_KEY_BLOCK: Secret block {name!r} must hold the PEM text as a string")
    return value


def redacted(url: str) -> str:
    """A database URL without its password (safe to print or log)."""
    # Imported when needed: it loads the database driver, which most commands never use.
    from kalshi_store.dberrors import url_without_password

    return url_without_password(url)


def local_prefect_defaults(settings: Settings, *, quiet: bool) -> None:
    """Environment defaults for a local flow run, set before Prefect is imported (explicit settings win).

    Without ``PREFECT_API_URL`` Prefect starts a temporary API server on a SQLite database in
    ``PREFECT_HOME``; keeping that in the data dir isolates it from other Prefect work on the machine.
    """
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING" if quiet else "INFO",
    }
    if "PREFECT_API_URL" not in os.environ and "PREFECT_HOME" not in os.environ:
        home = (settings.data_dir / "prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)
        defaults["PREFECT_HOME"] = str(home)
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


__all__ = ["DEFAULT_CONFIG", "ENVIRONMENT_NAMES", "CredentialsError", "Settings", "SettingsError", "absolute",
           "default_data_dir", "local_prefect_defaults", "newest_simulator_key", "redacted", "session_duration"]
