"""Error codes of spec section 6 and the typed errors' messages."""

from __future__ import annotations

from kalshi_ws.errors import (
    ERROR_CODES,
    TERMINAL_CODES,
    AuthenticationError,
    KalshiError,
    LegacyShapeError,
    ServerError,
    describe_error,
)


def test_every_code_of_the_spec_is_known() -> None:
    assert sorted(ERROR_CODES) == list(range(1, 29))
    assert TERMINAL_CODES == {10, 17, 25}
    assert ERROR_CODES[25][0] == "Subscription buffer overflow"
    assert ERROR_CODES[14][0] == "Market Ticker required"


def test_unknown_code() -> None:
    name, meaning, terminal = describe_error(99)
    assert "99" in name and "99" in meaning and terminal is False


def test_server_error_message_is_actionable() -> None:
    error = ServerError.from_code(25, "Subscription buffer overflow", sid=3)
    assert isinstance(error, KalshiError)
    assert error.terminal and error.code == 25 and error.sid == 3 and error.command_id is None
    text = str(error)
    assert "25" in text and "sid 3" in text and "resubscribe" in text
    error = ServerError(7, "custom meaning", "Unknown subscription ID", command_id=33)
    assert not error.terminal
    assert "command 33" in str(error) and "custom meaning" in str(error)


def test_authentication_error_hints() -> None:
    error = AuthenticationError(401, "INCORRECT_API_KEY_SIGNATURE")
    assert error.status == 401 and "clock" in str(error) and "INCORRECT_API_KEY_SIGNATURE" in str(error)
    assert "CDN" in str(AuthenticationError(403))


def test_legacy_shape_error() -> None:
    error = LegacyShapeError("ticker_v2", "removed 2026-02-12")
    assert error.type == "ticker_v2" and "removed 2026-02-12" in str(error)
