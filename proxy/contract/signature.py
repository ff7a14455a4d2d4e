"""`X-Hub-Signature-256`: HMAC-SHA256 of the exact body bytes, keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="
LEGACY_HEADER = "X-Hub-Signature"  # HMAC-SHA1, still sent by Meta beside the sha256 one


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The header value Meta sends for `body`: `sha256=` + lowercase hex digest."""
    return PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def sign_sha1(secret: str | bytes, body: bytes) -> str:
    """The legacy `X-Hub-Signature` value: `sha1=` + hex HMAC-SHA1 with the same key."""
    return "sha1=" + hmac.new(_key(secret), body, hashlib.sha1).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the valid signature of `body` (constant-time comparison)."""
    if not header or not header.startswith(PREFIX) or not header.isascii():
        return False  # compare_digest raises TypeError on non-ASCII str
    return hmac.compare_digest(sign(secret, body), header.strip())


def forge(body: bytes) -> str:
    """A well-formed signature that is wrong for `body`, for negative tests."""
    return PREFIX + hashlib.sha256(b"pseudowa-forged:" + body).hexdigest()
