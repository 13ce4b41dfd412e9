"""Where to connect: Kalshi production, demo, or any explicit base URL (the simulator)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .auth import REST_PREFIX, WS_PATH

#: Schemes a base URL may have (the WebSocket and REST URLs are derived from each other).
BASE_URL_SCHEMES = ("http", "https", "ws", "wss")


@dataclass(frozen=True)
class Environment:
    name: str
    ws_url: str
    rest_url: str

    @classmethod
    def at(cls, base_url: str, name: str = "custom") -> Environment:
        """An environment served at ``base_url`` (``http://127.0.0.1:8765`` for the simulator).

        ``ws``/``wss`` and ``http``/``https`` are derived from each other; a path is ignored.
        """
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme not in BASE_URL_SCHEMES or not parts.hostname:
            raise ValueError(f"{base_url!r} is not a base URL this client can use: give an http://, https://, "
                             "ws:// or wss:// URL with a host, such as http://127.0.0.1:8765")
        secure = parts.scheme in ("https", "wss")
        ws = urlunsplit(("wss" if secure else "ws", parts.netloc, WS_PATH, "", ""))
        rest = urlunsplit(("https" if secure else "http", parts.netloc, REST_PREFIX, "", ""))
        return cls(name, ws, rest)


PRODUCTION = Environment("production", "wss://external-api-ws.kalshi.com" + WS_PATH,
                         "https://external-api.kalshi.com" + REST_PREFIX)
PRODUCTION_SHARED = Environment("production-shared", "wss://api.elections.kalshi.com" + WS_PATH,
                                "https://api.elections.kalshi.com" + REST_PREFIX)
DEMO = Environment("demo", "wss://external-api-ws.demo.kalshi.co" + WS_PATH,
                   "https://external-api.demo.kalshi.co" + REST_PREFIX)
DEMO_SHARED = Environment("demo-shared", "wss://demo-api.kalshi.co" + WS_PATH,
                          "https://demo-api.kalshi.co" + REST_PREFIX)

ENVIRONMENTS = {env.name: env for env in (PRODUCTION, PRODUCTION_SHARED, DEMO, DEMO_SHARED)}


def resolve(name_or_url: str, *, ws_url: str | None = None, rest_url: str | None = None) -> Environment:
    """``production``, ``demo``, their ``-shared`` host variants, or a base URL; explicit URLs override."""
    if name_or_url in ENVIRONMENTS:
        env = ENVIRONMENTS[name_or_url]
    elif "://" in name_or_url or ":" in name_or_url:
        env = Environment.at(name_or_url)
    else:
        raise ValueError(
            f"unknown Kalshi environment {name_or_url!r}: use one of {', '.join(ENVIRONMENTS)} or a base URL "
            "such as http://127.0.0.1:8765"
        )
    if ws_url or rest_url:
        env = Environment(env.name, ws_url or env.ws_url, rest_url or env.rest_url)
    _check_url(env.ws_url, ("ws", "wss"), "WebSocket")
    _check_url(env.rest_url, ("http", "https"), "REST")
    return env


def _check_url(url: str, schemes: tuple[str, ...], what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{url!r} is not a {what} URL: it must start with {' or '.join(s + '://' for s in schemes)} "
                         "and name a host")
