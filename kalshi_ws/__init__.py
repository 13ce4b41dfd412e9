"""Kalshi WebSocket wire layer: messages, session protocol, asyncio client, REST client, simulator.

Importing the package is cheap: the names below are loaded from their modules on first use, so code that
only needs ``kalshi_ws.messages`` does not pay for websockets, httpx or cryptography.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import Signer
    from .backoff import Backoff
    from .client import ClientOptions, ConnectionGaveUp, KalshiWebSocketClient, MessageSink
    from .environments import Environment
    from .errors import AuthenticationError, KalshiError
    from .protocol import SessionProtocol, Subscription
    from .rest import KalshiRestClient, Market, RestError, RestOrderbook

_EXPORTS: dict[str, str] = {
    "Signer": "auth",
    "Backoff": "backoff",
    "Environment": "environments",
    "AuthenticationError": "errors",
    "KalshiError": "errors",
    "ClientOptions": "client",
    "ConnectionGaveUp": "client",
    "KalshiWebSocketClient": "client",
    "MessageSink": "client",
    "SessionProtocol": "protocol",
    "Subscription": "protocol",
    "KalshiRestClient": "rest",
    "Market": "rest",
    "RestError": "rest",
    "RestOrderbook": "rest",
}

__all__ = [
    "AuthenticationError",
    "Backoff",
    "ClientOptions",
    "ConnectionGaveUp",
    "Environment",
    "KalshiError",
    "KalshiRestClient",
    "KalshiWebSocketClient",
    "Market",
    "MessageSink",
    "RestError",
    "RestOrderbook",
    "SessionProtocol",
    "Signer",
    "Subscription",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kalshi_ws' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
