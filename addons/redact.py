"""Scrub secrets from recorded traffic and swap personal data for stable fakes.

Pure functions and one small stateful class, no mitmproxy: the recorder calls
them on every exchange before anything reaches the cassette store.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import Literal
from urllib.parse import quote
from urllib.parse import quote_plus
from urllib.parse import unquote_plus

from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.answers import REDACTED
from pseudowa.proxy.contract.ids import is_wamid
from pseudowa.proxy.contract.ids import wamid_number
from pseudowa.proxy.contract.ids import wamid_with_number
from pseudowa.proxy.contract.media_url import DOWNLOAD_PATH

# Credentials and the webhook signature (it is recomputed on replay, and an
# HMAC over a known body helps whoever wants to guess the app secret).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        signature.HEADER.lower(),
        signature.LEGACY_HEADER.lower(),
    }
)
# Query parameters that carry credentials on any Graph URL.
SECRET_PARAMS = frozenset({"access_token", "appsecret_proof"})
# The CDN signature of a media download URL (lookaside.fbsbx.com); `mid` stays.
MEDIA_SIGNATURE_PARAMS = frozenset({"hash", "ext", "oh", "oe"})
VERIFY_TOKEN_PARAM = "hub.verify_token"

SignatureState = Literal["valid", "invalid", "unchecked", "absent"]

_ATTACHMENTS = DOWNLOAD_PATH.rstrip("/")


# -- secrets -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _secret_forms(secret: str) -> tuple[str, ...]:
    """The ways a secret shows up in text: raw, JSON-escaped, percent-encoded (cached: the
    recorder asks for every header and body of every exchange)."""
    forms = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    ]
    forms.append(forms[1].replace("/", "\\/"))  # Graph escapes "/" in its JSON
    # Longest first, so a form never leaves half of a longer one behind.
    return tuple(sorted(set(forms), key=len, reverse=True))


def _ordered(secrets: Iterable[str]) -> Sequence[str]:
    if isinstance(secrets, tuple):
        return _ordered_tuple(secrets)
    return sorted({s for s in secrets if s}, key=len, reverse=True)


@functools.lru_cache(maxsize=64)
def _ordered_tuple(secrets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def replace_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every non-empty secret replaced by REDACTED."""
    for secret in _ordered(secrets):
        for form in _secret_forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_byte_forms(secret: str) -> tuple[bytes, ...]:
    return tuple(form.encode("utf-8") for form in _secret_forms(secret))


def _replace_secret_bytes(body: bytes, secrets: Sequence[str]) -> bytes:
    token = REDACTED.encode()
    for secret in _ordered(secrets):
        for raw in _secret_byte_forms(secret):
            if raw in body:
                body = body.replace(raw, token)
    return body


def scrub_headers(
    headers: Iterable[tuple[str, str]], secrets: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The headers without credentials, cookies and webhook signatures, in order.

    Any of `secrets` found in a remaining value is replaced too.
    """
    return [
        (name, replace_secrets(value, secrets) if secrets else value)
        for name, value in headers
        if name.lower() not in SECRET_HEADERS
    ]


def _param_name(part: str) -> str:
    return unquote_plus(part.partition("=")[0])


def is_media_download(url: str) -> bool:
    """True for a media download URL (Meta's lookaside path, or any URL naming a `mid`)."""
    path, _, query = url.partition("#")[0].partition("?")
    if _ATTACHMENTS in path:
        return True
    return any(_param_name(p) == "mid" for p in query.split("&") if p)


def scrub_url(url: str, secrets: Sequence[str] = ()) -> str:
    """The URL without credentials and media signatures; the verify token REDACTED.

    The rest of the URL is kept byte for byte (no re-encoding of the query).
    """
    head, sep, fragment = url.partition("#")
    base, qmark, query = head.partition("?")
    out = url
    if qmark:
        media = is_media_download(url)
        kept: list[str] = []
        for part in query.split("&"):
            name = _param_name(part)
            if name in SECRET_PARAMS:
                continue
            if media and (name in MEDIA_SIGNATURE_PARAMS or name.startswith("_nc_")):
                continue
            if name == VERIFY_TOKEN_PARAM:
                part = f"{part.partition('=')[0]}={REDACTED}"
            kept.append(part)
        new_query = "&".join(kept)
        if new_query != query:
            out = base + ("?" + new_query if new_query else "") + sep + fragment
    return replace_secrets(out, secrets) if secrets else out


def _looks_like_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _scrub_json(value: Any) -> tuple[Any, bool]:
    """A copy of a JSON value without `access_token` keys and with URL strings scrubbed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            if key == "access_token":
                changed = True
                continue
            out[key], sub = _scrub_json(item)
            changed = changed or sub
        return out, changed
    if isinstance(value, list):
        items = [_scrub_json(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, str) and _looks_like_url(value):
        scrubbed = scrub_url(value)
        return scrubbed, scrubbed != value
    return value, False


def _json_container(body: bytes) -> Any:
    """The body as a JSON object or array, else None (most bodies fail the first byte)."""
    if not body or body.lstrip()[:1] not in (b"{", b"["):
        return None
    return matching.parse_json(body)


def dumps_like(original: bytes, value: Any) -> bytes:
    """Compact JSON; ASCII with `\\uXXXX` escapes when `original` was ASCII (Meta's form)."""
    if original.isascii():
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def scrub_body(body: bytes, secrets: Sequence[str]) -> bytes:
    """The body with secrets REDACTED; JSON also loses `access_token` keys and URL signatures.

    A body with nothing to scrub comes back byte-identical.
    """
    out = _replace_secret_bytes(body, secrets) if body else body
    if b"access_token" not in out and b"http" not in out and b"\\u" not in out:
        return out  # no key to drop, no URL to scrub (not even \u-escaped): as it is
    parsed = _json_container(out)
    if parsed is not None:
        scrubbed, changed = _scrub_json(parsed)
        if changed:
            out = dumps_like(out, scrubbed)
    return out


def signature_state(body: bytes, header: str | None, app_secret: str | None) -> SignatureState:
    """How a webhook's `X-Hub-Signature-256` fares: valid, invalid, unchecked, absent."""
    if not header:
        return "absent"
    if not app_secret:
        return "unchecked"
    return "valid" if signature.verify(app_secret, body, header) else "invalid"


# -- pseudonyms --------------------------------------------------------------------------

# Fields holding a user's phone number / WhatsApp id, wherever they appear.
PHONE_KEYS = frozenset({"from", "wa_id", "recipient_id", "to", "input"})
# Fields holding a message id (a wamid embeds the counterpart's number).
WAMID_KEYS = frozenset({"id", "message_id"})
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ().\-]{3,30}")


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


class Pseudonymizer:
    """Consistent fake identities for one recording.

    The same real phone number always becomes the same fake one (same number
    of digits, `1555` + a counter), wherever it appears: webhooks, sends, send
    answers, statuses and the wamids that embed it. Fakes are issued in order,
    so they reveal nothing of the real numbers; a `seed` shifts the counter.
    The business's own numbers (`metadata.display_phone_number`) are kept.
    """

    PREFIX = "1555"

    def __init__(self, seed: str | int | None = None) -> None:
        self.seed = seed
        self._offset = 0
        if seed is not None:
            self._offset = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big")
        self._counter = 0
        self._phones: dict[str, str] = {}  # real digits -> fake digits
        self._issued: set[str] = set()
        self._reserved: set[str] = set()  # business numbers and fakes already in use
        self._names: dict[str, str] = {}
        self._wamids: dict[str, str] = {}

    # -- bookkeeping -----------------------------------------------------------------

    def keep(self, numbers: Iterable[str]) -> None:
        """Numbers left as they are (the business's own) and never issued as fakes."""
        self._reserved.update(d for d in map(_digits, numbers) if d)

    def reserve(self, fakes: Iterable[str]) -> None:
        """Fakes already in use (e.g. by an earlier session of the cassette): never issue them."""
        self._issued.update(d for d in map(_digits, fakes) if d)

    @property
    def phones(self) -> dict[str, str]:
        """The real -> fake digit mapping issued so far (keep it out of any stored artefact)."""
        return dict(self._phones)

    # -- identities -------------------------------------------------------------------

    def _fake_digits(self, real: str) -> str:
        n = len(real)
        head = self.PREFIX[: max(0, n - 1)] if n <= len(self.PREFIX) else self.PREFIX
        width = n - len(head)
        space = 10**width
        for _ in range(space):
            self._counter += 1
            candidate = head + str((self._offset + self._counter) % space).zfill(width)
            if (
                candidate not in self._issued
                and candidate not in self._phones
                and candidate not in self._reserved
                and candidate != real
            ):
                return candidate
        raise ValueError(f"no fake numbers of {n} digits left")

    def phone(self, real: str) -> str:
        """The fake for a phone number; formatting characters (`+`, spaces, dashes) are kept."""
        digits = _digits(real)
        if not digits or digits in self._reserved:
            return real
        fake = self._phones.get(digits)
        if fake is None:
            fake = self._fake_digits(digits)
            self._phones[digits] = fake
            self._issued.add(fake)
        it = iter(fake)
        return "".join(next(it) if ch.isdigit() else ch for ch in real)

    def name(self, real: str) -> str:
        """A profile name: `User 1`, `User 2`, ... in order of first appearance."""
        fake = self._names.get(real)
        if fake is None:
            fake = self._names[real] = f"User {len(self._names) + 1}"
        return fake

    def wamid(self, real: str) -> str:
        """A fake message id, the embedded phone number swapped for its fake."""
        fake = self._wamids.get(real)
        if fake is None:
            fake = self._wamids[real] = self._new_wamid(real)
        return fake

    def _new_wamid(self, real: str) -> str:
        number = wamid_number(real)
        if number is not None:
            fake: str | None = wamid_with_number(real, self.phone(number))
            if fake is not None:
                return fake
        # Not a layout we know: a stable id that carries nothing of the real one.
        prefix = real.partition(".")[0]
        digest = hashlib.sha256(f"{self.seed}:{real}".encode()).digest()[:24]
        return f"{prefix}.{base64.b64encode(digest).decode()}"

    # -- JSON --------------------------------------------------------------------------

    def rewrite(self, value: Any) -> Any:
        """A copy of a JSON value with phone numbers, profile names and wamids faked."""
        self.keep(_business_numbers(value))
        return self._rewrite(value, None)

    def _rewrite(self, value: Any, parent_key: str | None) -> Any:
        if isinstance(value, list):
            return [self._rewrite(v, parent_key) for v in value]
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, str):
                out[key] = self._field(key, item, parent_key)
            else:
                out[key] = self._rewrite(item, key)
        return out

    def _field(self, key: str, value: str, parent_key: str | None) -> str:
        if key in PHONE_KEYS or (key == "phone" and parent_key == "phones"):
            return self.phone(value) if _PHONE_RE.fullmatch(value) else value
        if key == "name" and parent_key == "profile":
            return self.name(value)
        if key in WAMID_KEYS and is_wamid(value):
            return self.wamid(value)
        return value

    def rewrite_body(self, body: bytes) -> bytes:
        """A JSON body rewritten (compact; webhooks in Meta's ASCII form); others unchanged."""
        parsed = _json_container(body)
        if not isinstance(parsed, (dict, list)):
            return body
        rewritten = self.rewrite(parsed)
        if rewritten == parsed:
            return body
        if isinstance(rewritten, dict) and webhooks.parse(body) is not None:
            compact: bytes = webhooks.dumps(rewritten)
            return compact
        return dumps_like(body, rewritten)


def _business_numbers(value: Any) -> list[str]:
    """Every `display_phone_number` in a JSON value."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            number = item.get("display_phone_number")
            if isinstance(number, str):
                found.append(number)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
