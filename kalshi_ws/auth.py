"""Request signing: RSA-PSS / SHA-256 over ``timestamp_ms + METHOD + path`` (spec section 2).

The private key never leaves :class:`Signer`: its ``repr`` shows only the key id, it is never logged,
and errors about a key name the file or variable, never its content.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

WS_PATH = "/trade-api/ws/v2"
REST_PREFIX = "/trade-api/v2"

_PSS_SIGN = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
# Verification accepts any salt length; Kalshi's own signers use the digest length.
_PSS_VERIFY = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


class PrivateKeyError(ValueError):
    """A private key could not be loaded; the message says where it came from and what to do."""


def load_private_key(pem: bytes | str, *, source: str = "the PEM text") -> rsa.RSAPrivateKey:
    """Load an RSA private key from PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 PEM."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "this key needs a password"
        raise PrivateKeyError(
            f"{source} holds an encrypted (password-protected) private key: give the unencrypted key "
            "(openssl pkey -in ENCRYPTED.pem -out key.pem, then chmod 600 key.pem)"
        ) from None
    except ValueError:  # cryptography's messages say nothing about the key's content, but neither do we
        what = "no PEM block" if b"-----BEGIN" not in data else "a PEM block that is not an RSA private key"
        raise PrivateKeyError(
            f"could not read an unencrypted RSA private key (PKCS#1 or PKCS#8 PEM) from {source}: found {what}; "
            "give the private key file downloaded from Kalshi (it starts with -----BEGIN RSA PRIVATE KEY----- "
            "or -----BEGIN PRIVATE KEY-----)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PrivateKeyError(f"{source} holds a {type(key).__name__}; Kalshi keys are RSA")
    return key


def read_private_key_file(path: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
    """Read a key file, warning when group or others may read it."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        data = p.read_bytes()
    except FileNotFoundError:
        raise PrivateKeyError(f"private key file {p} does not exist") from None
    except PermissionError:
        raise PrivateKeyError(f"private key file {p} is not readable by this user") from None
    except IsADirectoryError:
        raise PrivateKeyError(f"{p} is a directory, not a private key file: give the path of the PEM file") from None
    except OSError as exc:
        raise PrivateKeyError(f"private key file {p} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("private key file %s is accessible by group/others (mode %o); run: chmod 600 %s",
                    p, stat.S_IMODE(mode), p)
    return load_private_key(data, source=f"file {p}")


#: Clock differences below this are within what a ``Date`` header (1 s resolution) and latency can show.
CLOCK_SKEW_NOTICEABLE = 2.0


def clock_skew(date_header: str | None, signed_ms: str | int | None = None) -> float | None:
    """Seconds this machine's clock was ahead of the server's (negative: behind) when it signed a request:
    the signed ``KALSHI-ACCESS-TIMESTAMP`` (default: now) against the answer's HTTP ``Date`` header; ``None``
    without a usable header."""
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header).timestamp()
        local = time.time() if signed_ms is None else int(signed_ms) / 1000
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # The header is truncated to the second: the server's clock read between ``server`` and ``server + 1``.
    return local - (server + 0.5)


def signature_rejected_hint(date_header: str | None, signed_ms: str | int | None = None) -> str:
    """One sentence on why the exchange rejected a signed request (HTTP 401), using its ``Date`` header to
    tell a wrong clock (the signed timestamp is outside the accepted window) from a wrong key."""
    skew = clock_skew(date_header, signed_ms)
    said = "the exchange rejected the request signature"
    if skew is None:
        return (f"{said}: check that KALSHI_API_KEY_ID and the private key belong together and to this "
                "environment (demo keys do not work in production), and that this machine's clock is synchronised (NTP)")
    if abs(skew) >= CLOCK_SKEW_NOTICEABLE:
        direction = "ahead of" if skew > 0 else "behind"
        return (f"{said}; this machine's clock is {abs(skew):.0f} s {direction} the exchange's (Date header): "
                "sync it (NTP)")
    return (f"{said}; this machine's clock agrees with the exchange's (Date header, within "
            f"{CLOCK_SKEW_NOTICEABLE:g} s), so check that KALSHI_API_KEY_ID and the private key belong together and "
            "to this environment (demo keys do not work in production)")


@dataclass(frozen=True)
class Signer:
    """Signs Kalshi requests for one API key. Safe to print: shows the key id only."""

    key_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def from_file(cls, key_id: str, path: str | os.PathLike[str]) -> Signer:
        return cls(key_id, read_private_key_file(path))

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str, *, source: str = "the PEM text") -> Signer:
        return cls(key_id, load_private_key(pem, source=source))

    def headers(self, method: str, path: str, *, timestamp_ms: int | None = None) -> dict[str, str]:
        """The three ``KALSHI-ACCESS-*`` headers for one request, signed now (never cache them)."""
        ts = str(time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms)
        message = (ts + method.upper() + path.split("?", 1)[0]).encode()
        signature = self.private_key.sign(message, _PSS_SIGN, hashes.SHA256())
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode(),
        }

    def websocket_headers(self) -> dict[str, str]:
        return self.headers("GET", WS_PATH)


def verify_signature(public_key: rsa.RSAPublicKey, timestamp: str, method: str, path: str,
                     signature_b64: str) -> bool:
    """Check a ``KALSHI-ACCESS-SIGNATURE`` the way the exchange does (for the simulator and tests)."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, (timestamp + method.upper() + path.split("?", 1)[0]).encode(),
                          _PSS_VERIFY, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key_pair(directory: str | os.PathLike[str], *, pkcs1: bool = True) -> tuple[str, Path, Path]:
    """Create a 2048-bit key pair in ``directory`` (private key mode 0600), like a key made in Kalshi's UI.

    Returns ``(key_id, private_key_path, public_key_path)``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = str(uuid.uuid4())
    private_path = folder / f"{key_id}.key"
    public_path = folder / f"{key_id}.pub.pem"
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id, private_path, public_path


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise PrivateKeyError("public key is not RSA")
    return key
