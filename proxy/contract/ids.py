"""Identifiers shaped like Meta's: wamids, media ids, trace ids, conversation ids, sha256 forms."""

from __future__ import annotations

import base64
import binascii
import functools
import os
import random
import secrets

# Wamids and trace ids are made on every request (a wamid per send, two trace ids per
# answer), so they come from one generator seeded from os.urandom once per process
# rather than from `secrets` (a syscall per id), which was a measurable share of a send.
# They only need to be unique and Meta-shaped, not unguessable: none of them grants
# access to anything (download URLs are signed with a `secrets` key, see graph.py).
# A private instance: a bot or test calling random.seed() must not make ids repeat.
_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    # A forked child would otherwise hand out the very ids its parent hands out next.
    os.register_at_fork(after_in_child=_reseed)


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Meta's wamid layout (base64 after `wamid.`): these two bytes, the length of the
# counterpart's number, its ASCII digits, then an opaque id.
_WAMID_MAGIC = b"\x1c\x18"


def wa_id_of(number: str) -> str:
    """A phone number as WhatsApp ids it: its digits only (`+1 650-555-1234` -> `16505551234`)."""
    return "".join(ch for ch in number if ch.isdigit())


@functools.lru_cache(maxsize=1024)
def _wamid_head(recipient: str) -> bytes:
    """The part of a wamid before its random id: it only depends on the recipient."""
    digits = wa_id_of(recipient).encode()
    return _WAMID_MAGIC + bytes([len(digits)]) + digits + b"\x15\x02\x00\x11\x18\x12"


def new_wamid(recipient: str = "") -> str:
    """A fresh message id in Meta's form: `wamid.` + base64 of phone number and random bytes.

    Real wamids encode the counterpart's number followed by an opaque id; bots
    treat them as opaque strings, so only the prefix and alphabet matter.
    """
    # 72 random bits as 18 upper-case hex digits, like Meta's opaque part.
    raw = _wamid_head(recipient) + b"%018X\x00" % _rng.getrandbits(72)
    return "wamid." + binascii.b2a_base64(raw, newline=False).decode()


def new_media_id() -> str:
    """A fresh media id: Meta's are 15 to 16 decimal digits."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def new_fbtrace_id() -> str:
    """A trace id as found in `error.fbtrace_id` and the `x-fb-trace-id` header."""
    # 17 random bytes in url-safe base64 are 23 characters and one "=" of padding
    # (what base64.urlsafe_b64encode does, minus its Python-level overhead).
    raw = _rng.getrandbits(136).to_bytes(17, "big")
    return binascii.b2a_base64(raw, newline=False)[:23].translate(_URLSAFE).decode()


def new_conversation_id() -> str:
    """A conversation id as found in status webhooks (32 hex characters)."""
    return secrets.token_hex(16)


def is_wamid(value: object) -> bool:
    """True for strings that look like a WhatsApp message id."""
    return isinstance(value, str) and value.startswith("wamid.") and len(value) > 6


def _wamid_parts(wamid: str) -> tuple[str, bytes, bytes, str] | None:
    """(prefix, bytes before the number, the number, base64 text) in Meta's layout, or None."""
    prefix, _, encoded = wamid.partition(".")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if raw[:2] != _WAMID_MAGIC or len(raw) <= 3:
        return None
    length = raw[2]
    number = raw[3 : 3 + length]
    if len(number) != length or not number.isdigit():
        return None
    return prefix, raw[3 + length :], number, encoded


def wamid_number(wamid: str) -> str | None:
    """The counterpart's phone number (digits) a wamid embeds, or None for another layout."""
    parts = _wamid_parts(wamid)
    return parts[2].decode() if parts is not None else None


def wamid_with_number(wamid: str, number: str) -> str | None:
    """`wamid` embedding the digits `number` instead, the rest kept; None for another layout.

    Padding follows the original: a wamid written without `=` stays without.
    """
    parts = _wamid_parts(wamid)
    if parts is None:
        return None
    prefix, rest, _, encoded = parts
    digits = number.encode()
    rebuilt = _WAMID_MAGIC + bytes([len(digits)]) + digits + rest
    text = base64.b64encode(rebuilt).decode()
    if not encoded.endswith("="):
        text = text.rstrip("=")
    return f"{prefix}.{text}"


def sha256_hex(value: object) -> str | None:
    """A sha256 in lowercase hex, from hex (Graph media metadata) or base64 (webhooks).

    None for anything else: not a string, empty, or not 32 bytes in either form.
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if len(text) == 64:
        try:
            bytes.fromhex(text)
        except ValueError:
            pass
        else:
            return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def sha256_hex_to_b64(sha_hex: str) -> str:
    """A hex sha256 (the store's form) in base64, as webhooks carry it; ValueError if not hex."""
    return base64.b64encode(bytes.fromhex(sha_hex)).decode()
