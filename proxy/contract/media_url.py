"""Short-lived, HMAC-signed media download URLs, like lookaside.fbsbx.com's.

The URL names the media id and an expiry; its `hash` is an HMAC over both, so a
forged or edited URL fails, and an expired one answers 404 as Meta does.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

DEFAULT_TTL_S = 300.0  # Meta: media URLs are valid for 5 minutes
DOWNLOAD_PATH = "/whatsapp_business/attachments/"


@dataclass(frozen=True)
class SignedMedia:
    """The query of a download URL: media id, expiry (Unix seconds), signature."""

    mid: str
    ext: int
    hash: str

    def query(self) -> str:
        return urlencode({"mid": self.mid, "ext": str(self.ext), "hash": self.hash})


def _mac(secret: bytes, mid: str, ext: int) -> str:
    return hmac.new(secret, f"{mid}:{ext}".encode(), hashlib.sha256).hexdigest()[:40]


def sign(
    secret: bytes, media_id: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None
) -> SignedMedia:
    """Sign a download of `media_id` valid for `ttl_s` seconds from `now`."""
    ext = int((time.time() if now is None else now) + ttl_s)
    return SignedMedia(media_id, ext, _mac(secret, media_id, ext))


def check(
    secret: bytes, mid: str | None, ext: str | None, sig: str | None, now: float | None = None
) -> str | None:
    """The media id of a valid, unexpired signed URL; None if forged, edited or expired."""
    if not mid or not ext or not sig or not sig.isascii():
        return None  # compare_digest raises TypeError on non-ASCII str
    try:
        expires = int(ext)
    except ValueError:
        return None
    if not hmac.compare_digest(_mac(secret, mid, expires), sig):
        return None
    if (time.time() if now is None else now) >= expires:
        return None
    return mid
