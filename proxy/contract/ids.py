"""Identifiers shaped like Meta's: wamids, media ids, trace ids, conversation ids."""

from __future__ import annotations

import base64
import secrets


def new_wamid(recipient: str = "") -> str:
    """A fresh message id in Meta's form: `wamid.` + base64 of phone number and random bytes.

    Real wamids encode the counterpart's number followed by an opaque id; bots
    treat them as opaque strings, so only the prefix and alphabet matter.
    """
    digits = "".join(ch for ch in recipient if ch.isdigit()).encode()
    raw = b"\x1c\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x11\x18\x12"
    raw += secrets.token_hex(9).upper().encode() + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


def new_media_id() -> str:
    """A fresh media id: Meta's are 15 to 16 decimal digits."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def new_fbtrace_id() -> str:
    """A trace id as found in `error.fbtrace_id` and the `x-fb-trace-id` header."""
    return base64.urlsafe_b64encode(secrets.token_bytes(17)).decode().rstrip("=")[:23]


def new_conversation_id() -> str:
    """A conversation id as found in status webhooks (32 hex characters)."""
    return secrets.token_hex(16)


def is_wamid(value: object) -> bool:
    """True for strings that look like a WhatsApp message id."""
    return isinstance(value, str) and value.startswith("wamid.") and len(value) > 6
