"""Identifiers shaped like Meta's: wamids, media ids, trace ids, conversation ids."""

from __future__ import annotations

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


@functools.lru_cache(maxsize=1024)
def _wamid_head(recipient: str) -> bytes:
    """The part of a wamid before its random id: it only depends on the recipient."""
    digits = "".join(ch for ch in recipient if ch.isdigit()).encode()
    return b"\x1c\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x11\x18\x12"


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
