"""The signer: RSA-PSS over ts+METHOD+path, both PEM encodings, and no key material in reprs or errors."""

from __future__ import annotations

import base64
import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kalshi_ws.auth import (
    PrivateKeyError,
    Signer,
    generate_key_pair,
    load_public_key,
    read_private_key_file,
    verify_signature,
)
from kalshi_ws.environments import DEMO, PRODUCTION, Environment, resolve


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8])
def test_signature_verifies_with_kalshi_parameters(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> None:
    signer = Signer.from_pem("key-1", _pem(key, fmt))
    headers = signer.headers("get", "/trade-api/v2/markets/trades?ticker=X&limit=1000", timestamp_ms=1795184999874)
    assert headers["KALSHI-ACCESS-KEY"] == "key-1"
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1795184999874"
    signature = base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"], validate=True)
    # Verified independently with cryptography, with the exact parameters of the spec (salt = digest length):
    # the query string is not signed, the method is upper case.
    key.public_key().verify(
        signature,
        b"1795184999874GET/trade-api/v2/markets/trades",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_websocket_headers_are_fresh_and_pass_the_exchange_check(key: rsa.RSAPrivateKey) -> None:
    signer = Signer("key-1", key)
    first, second = signer.websocket_headers(), signer.websocket_headers()
    assert first["KALSHI-ACCESS-SIGNATURE"] != second["KALSHI-ACCESS-SIGNATURE"]  # PSS is randomised
    for h in (first, second):
        assert verify_signature(key.public_key(), h["KALSHI-ACCESS-TIMESTAMP"], "GET", "/trade-api/ws/v2",
                                h["KALSHI-ACCESS-SIGNATURE"])
    # A signature does not verify for another path, another timestamp, or garbage.
    assert not verify_signature(key.public_key(), first["KALSHI-ACCESS-TIMESTAMP"], "GET", "/trade-api/v2",
                                first["KALSHI-ACCESS-SIGNATURE"])
    assert not verify_signature(key.public_key(), "1", "GET", "/trade-api/ws/v2", first["KALSHI-ACCESS-SIGNATURE"])
    assert not verify_signature(key.public_key(), "1", "GET", "/trade-api/ws/v2", "not base64!")


def test_key_material_never_shows(key: rsa.RSAPrivateKey, tmp_path) -> None:
    pem = _pem(key, serialization.PrivateFormat.PKCS8)
    signer = Signer.from_pem("key-1", pem)
    text = repr(signer) + str(signer)
    assert "key-1" in text
    assert "PRIVATE" not in text and pem.decode().splitlines()[1][:20] not in text
    broken = pem.replace(b"M", b"x", 5)
    with pytest.raises(PrivateKeyError) as err:
        Signer.from_pem("key-1", broken, source="KALSHI_PRIVATE_KEY_PEM")
    assert "KALSHI_PRIVATE_KEY_PEM" in str(err.value)
    assert broken.decode().splitlines()[1][:20] not in str(err.value)


def test_generated_key_pair_is_private_and_usable(tmp_path) -> None:
    key_id, private_path, public_path = generate_key_pair(tmp_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1, like Kalshi's UI
    signer = Signer.from_file(key_id, private_path)
    h = signer.websocket_headers()
    assert verify_signature(load_public_key(public_path.read_bytes()), h["KALSHI-ACCESS-TIMESTAMP"], "GET",
                            "/trade-api/ws/v2", h["KALSHI-ACCESS-SIGNATURE"])


def test_key_file_problems_name_the_file(tmp_path, caplog) -> None:
    with pytest.raises(PrivateKeyError, match="does not exist"):
        read_private_key_file(tmp_path / "missing.key")
    _, private_path, _ = generate_key_pair(tmp_path)
    os.chmod(private_path, 0o644)
    with caplog.at_level(logging.WARNING):
        read_private_key_file(private_path)
    assert "chmod 600" in caplog.text and str(private_path) in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_environments() -> None:
    assert resolve("production") is PRODUCTION
    assert resolve("demo") is DEMO
    assert resolve("production").ws_url == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    assert resolve("demo-shared").rest_url == "https://demo-api.kalshi.co/trade-api/v2"
    local = resolve("http://127.0.0.1:8765")
    assert local == Environment("custom", "ws://127.0.0.1:8765/trade-api/ws/v2", "http://127.0.0.1:8765/trade-api/v2")
    assert resolve("production", ws_url="ws://x/y").ws_url == "ws://x/y"
    with pytest.raises(ValueError, match="unknown Kalshi environment 'prod'"):
        resolve("prod")
