"""Typed errors of the wire layer, and what every Kalshi WebSocket error code means (spec section 6).

Rely on the numeric ``code`` only, never on the server's text: the wording has changed over the years
(older notes show "10 Authentication required"), the numbers have not.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ERROR_CODES",
    "TERMINAL_CODES",
    "AuthenticationError",
    "KalshiError",
    "LegacyShapeError",
    "ServerError",
    "describe_error",
]


class KalshiError(Exception):
    """Base of every error raised by ``kalshi_ws``."""


#: code -> (name as the server writes it, what it means and what to do, terminal).
#: Terminal errors kill the subscription they name (``sid``); the session resubscribes the channel.
#: 17 is retired in the newest spec but was terminal while it existed, so it is kept terminal.
ERROR_CODES: Final[dict[int, tuple[str, str, bool]]] = {
    1: ("Unable to process message", "the command was not valid JSON or a field had the wrong type", False),
    2: ("Params required", "the command has no 'params' (or misses a required subscription parameter)", False),
    3: ("Channels required", "'subscribe' needs a non-empty 'channels' list", False),
    4: ("Subscription IDs required", "'unsubscribe' needs a non-empty 'sids' list", False),
    5: ("Unknown command", "'cmd' must be subscribe, unsubscribe, update_subscription or list_subscriptions",
        False),
    6: ("Already subscribed", "the channel is already active on this connection (retired: subscribe is "
        "idempotent since 2025-10-01)", False),
    7: ("Unknown subscription ID", "the sid is not active on this connection (sids die with their connection)",
        False),
    8: ("Unknown channel name", "the channel does not exist (ticker_v2 and multivariate were removed)", False),
    9: ("Authentication required", "the channel or action needs authentication or an entitlement this API key "
        "lacks", False),
    10: ("Channel error", "the server failed while starting or running the subscription; it is dead and must "
         "be re-created", True),
    11: ("Invalid parameter", "a parameter is malformed (for example a bad market id)", False),
    12: ("Exactly one subscription ID is required", "'update_subscription' needs exactly one of 'sid' or a "
         "one-element 'sids'", False),
    13: ("Unsupported action", "the update_subscription action is not valid for this channel", False),
    14: ("Market Ticker required", "this channel needs market_ticker(s) (orderbook_delta always does)", False),
    15: ("Action required", "'update_subscription' needs an 'action'", False),
    16: ("Market not found", "a ticker or market id is unknown (retired in the newest spec)", False),
    17: ("Internal error", "unexpected server error; the subscription is dead (retired in the newest spec)", True),
    18: ("Command timeout", "the server timed out routing the command to the subscription; retry it", False),
    19: ("shard_factor must be > 0", "communications: shard_factor must be at least 1", False),
    20: ("shard_factor is required when shard_key is set", "communications: give shard_factor with shard_key",
         False),
    21: ("shard_key must be >= 0 and < shard_factor", "communications: shard_key out of range", False),
    22: ("shard_factor must be <= 100", "communications: shard_factor is at most 100", False),
    23: ("Match IDs required", "the channel or action needs 'match_ids'", False),
    24: ("Index IDs required", "cfbenchmarks index actions need 'index_ids'", False),
    25: ("Subscription buffer overflow", "the subscription's outbound buffer overflowed because the client read "
         "too slowly; it is dead: resubscribe and consume faster or split the subscription", True),
    26: ("Subscription market limit exceeded", "adding these markets would exceed the per-subscription market "
         "limit; split the markets over several connections", False),
    27: ("Too many requests", "the subscription exceeded its command rate limit; send commands more slowly",
         False),
    28: ("Underlying tickers required", "pyth underlying actions need 'underlying_tickers'", False),
}

#: Codes after which the named subscription is dead.
TERMINAL_CODES: Final = frozenset(code for code, (_, _, terminal) in ERROR_CODES.items() if terminal)


def describe_error(code: int) -> tuple[str, str, bool]:
    """``(name, meaning, terminal)`` for a code; unknown codes are reported as such and not terminal."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known
    return (f"Unknown error code {code}", f"error code {code} is not in the protocol reference (section 6)",
            False)


class ServerError(KalshiError):
    """The server answered with an ``error`` message."""

    def __init__(self, code: int, meaning: str, message: str, sid: int | None = None,
                 command_id: int | None = None) -> None:
        self.code = code
        self.name, _, self.terminal = describe_error(code)
        self.meaning = meaning
        self.message = message
        self.sid = sid
        self.command_id = command_id
        where = []
        if command_id is not None:
            where.append(f"command {command_id}")
        if sid is not None:
            where.append(f"sid {sid}")
        scope = f" ({', '.join(where)})" if where else ""
        text = f": {message!r}" if message else ""
        super().__init__(f"Kalshi error {code} {self.name}{scope}{text}: {meaning}")

    @classmethod
    def from_code(cls, code: int, message: str = "", sid: int | None = None,
                  command_id: int | None = None) -> ServerError:
        return cls(code, describe_error(code)[1], message, sid, command_id)


class AuthenticationError(KalshiError):
    """The WebSocket upgrade was refused (HTTP ``status``, usually 401 or 403)."""

    def __init__(self, status: int, detail: str = "", hint: str = "") -> None:
        self.status = status
        self.detail = detail
        hint = hint or ("check KALSHI_API_KEY_ID and the private key belong together and to this environment "
                        "(demo keys do not work in production), and that the system clock is synchronised (NTP)")
        if status == 403:
            hint = ("the request was forbidden before reaching the API (often a CDN rule); check the host, the "
                    "path /trade-api/ws/v2 and the KALSHI-ACCESS-* headers, then " + hint)
        text = f" ({detail})" if detail else ""
        super().__init__(f"WebSocket handshake rejected with HTTP {status}{text}: {hint}")


class LegacyShapeError(KalshiError):
    """A frame arrived in a shape Kalshi removed in 2026 (integer cents/counts, ``ticker_v2`` ...)."""

    def __init__(self, type: str, reason: str) -> None:
        self.type = type
        self.reason = reason
        super().__init__(f"legacy {type!r} frame: {reason}; the server (or simulator) speaks a pre-2026 "
                         "protocol version that this client does not record")
