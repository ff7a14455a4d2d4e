"""Inbound message fields: which a message of each type has, how a value is typed, and
how a new inbound message is built.

The schema follows the shapes of Meta's inbound message types (whatsapp-cloud-api.md §2.3;
Meta's IncomingMessage schema). A path is dotted and relative to the `messages[]` item
(`text.body`, `location.latitude`, `interactive.button_reply.title`). Mistakes raise
`PayloadError`, a one-line `ValueError` that says what the field takes.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from typing import Any
from typing import Literal

from . import webhooks

Payload = dict[str, Any]
FieldKind = Literal["string", "number", "boolean", "timestamp", "phone"]


class PayloadError(ValueError):
    """A payload edit that does not fit Meta's shapes; the message says why, in one line."""


_MEDIA: dict[str, FieldKind] = {
    "mime_type": "string",
    "sha256": "string",
    "id": "string",
    "url": "string",
}
_REFERRAL = (
    "source_url",
    "source_id",
    "source_type",
    "body",
    "headline",
    "media_type",
    "image_url",
    "video_url",
    "thumbnail_url",
    "ctwa_clid",
)


def _sub(type_: str, fields: dict[str, FieldKind]) -> dict[str, FieldKind]:
    return {f"{type_}.{name}": kind for name, kind in fields.items()}


# Settable fields of every inbound message, by dotted path relative to the message.
COMMON_FIELDS: dict[str, FieldKind] = {
    "from": "phone",
    "timestamp": "timestamp",
    "context.from": "phone",
    "context.id": "string",
    "context.forwarded": "boolean",
    "context.frequently_forwarded": "boolean",
    **{f"referral.{name}": "string" for name in _REFERRAL},
}

# The type-specific fields (whatsapp-cloud-api.md §2.3; Meta's IncomingMessage schema).
MESSAGE_FIELDS: dict[str, dict[str, FieldKind]] = {
    "text": {"text.body": "string"},
    "image": _sub("image", {"caption": "string", **_MEDIA}),
    "video": _sub("video", {"caption": "string", **_MEDIA}),
    "audio": _sub("audio", {**_MEDIA, "voice": "boolean"}),
    "document": _sub("document", {"caption": "string", "filename": "string", **_MEDIA}),
    "sticker": _sub("sticker", {**_MEDIA, "animated": "boolean"}),
    "location": _sub(
        "location",
        {
            "latitude": "number",
            "longitude": "number",
            "name": "string",
            "address": "string",
            "url": "string",
        },
    ),
    "button": _sub("button", {"payload": "string", "text": "string"}),
    "reaction": _sub("reaction", {"message_id": "string", "emoji": "string"}),
    "order": _sub("order", {"catalog_id": "string", "text": "string"}),
    "system": _sub("system", {"body": "string", "wa_id": "phone", "type": "string"}),
}

# Interactive replies: the fields depend on `interactive.type`.
INTERACTIVE_FIELDS: dict[str, dict[str, FieldKind]] = {
    "button_reply": _sub("interactive.button_reply", {"id": "string", "title": "string"}),
    "list_reply": _sub(
        "interactive.list_reply", {"id": "string", "title": "string", "description": "string"}
    ),
    "nfm_reply": _sub(
        "interactive.nfm_reply", {"name": "string", "body": "string", "response_json": "string"}
    ),
}

_RANGES = {"location.latitude": (-90.0, 90.0), "location.longitude": (-180.0, 180.0)}

# The kinds of message a sandbox user can send, as `build_message` takes them.
MEDIA_KINDS = webhooks.MEDIA_TYPES
ADD_KINDS = ("text", *MEDIA_KINDS, "location", "button_reply", "list_reply", "reaction")


def message_fields(message: Payload) -> dict[str, FieldKind]:
    """The settable fields of one inbound message, by its type (and interactive type)."""
    mtype = message.get("type")
    fields = dict(COMMON_FIELDS)
    if mtype == "interactive":
        sub = message.get("interactive")
        itype = sub.get("type") if isinstance(sub, dict) else None
        fields.update(INTERACTIVE_FIELDS.get(itype if isinstance(itype, str) else "", {}))
    elif isinstance(mtype, str):
        fields.update(MESSAGE_FIELDS.get(mtype, {}))
    return fields


def _describe_type(message: Payload) -> str:
    mtype = message.get("type")
    if mtype == "interactive":
        sub = message.get("interactive")
        itype = sub.get("type") if isinstance(sub, dict) else None
        return f"interactive {itype}" if itype else "interactive"
    return str(mtype)


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def coerce_value(path: str, kind: FieldKind, value: Any) -> Any:
    """`value` as the field wants it; strings are parsed as JSON for non-string fields."""
    shown = value if isinstance(value, str) else json.dumps(value)
    if kind == "string":
        if isinstance(value, str):
            return value
        raise PayloadError(f"{path} takes a string, not {shown}")
    if kind in ("phone", "timestamp"):
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        digits = text[1:] if kind == "phone" and isinstance(text, str) and text[:1] == "+" else text
        if isinstance(text, str) and isinstance(digits, str) and digits.isdigit():
            return text
        what = "a phone number (digits)" if kind == "phone" else "Unix seconds (digits, a string)"
        raise PayloadError(f"{path} takes {what}, not {shown!r}")
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
    if kind == "boolean":
        if isinstance(parsed, bool):
            return parsed
        raise PayloadError(f"{path} takes true or false, not {shown!r}")
    if (
        isinstance(parsed, bool)
        or not isinstance(parsed, (int, float))
        or not math.isfinite(parsed)
    ):
        raise PayloadError(f"{path} takes a number, not {shown!r}")
    low, high = _RANGES.get(path, (-math.inf, math.inf))
    if not low <= parsed <= high:
        raise PayloadError(f"{path} must lie between {low:g} and {high:g}, not {parsed}")
    return parsed


def set_message_field(message: Payload, path: str, value: Any) -> Payload:
    """A copy of `message` with `path` (dotted, relative to the message) set to `value`.

    The path must be a field of the message's type and the value of the field's kind.
    """
    fields = message_fields(message)
    kind = fields.get(path)
    if kind is None:
        what = _describe_type(message)
        close = difflib.get_close_matches(path, list(fields), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        own = [f for f in fields if f not in COMMON_FIELDS] or list(fields)
        raise PayloadError(
            f"{path!r} is not a field of {_a(what)} message{hint} (fields: {', '.join(own)}, "
            "and from, timestamp, context.*, referral.*)"
        )
    typed = coerce_value(path, kind, value)
    out = copy.deepcopy(message)
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = typed
    return out


def field_value(message: Payload, path: str) -> Any:
    """The value at dotted `path` inside `message`; None where the path leads nowhere."""
    node: Any = message
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def build_message(
    kind: str,
    sender: str,
    *,
    wamid: str,
    timestamp: str,
    context: Payload | None = None,
    **fields: Any,
) -> Payload:
    """A new inbound `messages[]` item of `kind`, from the contract's builders.

    Fields per kind: text `body`; media `media_id`, `mime_type`, `sha256` (base64),
    `caption`, `filename`, `voice`, `animated`; location `latitude`, `longitude`, `name`,
    `address`; button_reply/list_reply `reply_id`, `title` (`description`); reaction
    `message_id`, `emoji`.
    """

    def need(name: str) -> Any:
        value = fields.get(name)
        if value is None:
            raise PayloadError(f"a {kind} message needs {name}")
        return value

    def typed(path: str, fkind: FieldKind, name: str) -> Any:
        return coerce_value(path, fkind, need(name))

    body: Payload
    mtype = kind
    if kind == "text":
        body = webhooks.text_body(typed("text.body", "string", "body"))
    elif kind in MEDIA_KINDS:
        body = webhooks.media_body(
            kind,
            need("media_id"),
            need("mime_type"),
            need("sha256"),
            caption=fields.get("caption"),
            filename=fields.get("filename"),
            voice=fields.get("voice"),
            animated=fields.get("animated"),
        )
    elif kind == "location":
        body = webhooks.location_body(
            typed("location.latitude", "number", "latitude"),
            typed("location.longitude", "number", "longitude"),
            fields.get("name"),
            fields.get("address"),
        )
    elif kind == "button_reply":
        mtype = "interactive"
        body = webhooks.button_reply_body(need("reply_id"), need("title"))
    elif kind == "list_reply":
        mtype = "interactive"
        body = webhooks.list_reply_body(need("reply_id"), need("title"), fields.get("description"))
    elif kind == "reaction":
        body = webhooks.reaction_body(need("message_id"), fields.get("emoji") or "")
    else:
        raise PayloadError(f"cannot add a {kind!r} message; kinds: {', '.join(ADD_KINDS)}")
    return webhooks.message(mtype, sender, body, wamid=wamid, timestamp=timestamp, context=context)
