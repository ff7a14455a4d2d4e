"""Webhook payloads: build Meta's envelopes, inbound messages and statuses; index them.

Shapes follow whatsapp-cloud-api.md §2-3 and the OpenAPI `WebhookPayload` schema:
string timestamps, `wamid.` ids, media sha256 in base64 (Meta's webhook form).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import GraphError
from .ids import new_conversation_id
from .ids import new_wamid

OBJECT = "whatsapp_business_account"
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUS_ORDER = ("sent", "delivered", "read")

Payload = dict[str, Any]


@dataclass(frozen=True)
class BusinessAccount:
    """The business side of a conversation: WABA, phone-number id and display number."""

    waba_id: str = "102290129340398"
    phone_number_id: str = "106540352242922"
    display_phone_number: str = "15550783881"

    def metadata(self) -> Payload:
        return {
            "display_phone_number": self.display_phone_number,
            "phone_number_id": self.phone_number_id,
        }


@dataclass(frozen=True)
class WebhookEvent:
    """One message, status or error found inside a webhook body."""

    category: str  # "message" | "status" | "error"
    type: str | None  # message type, status value, or error code as text
    wamid: str | None = None
    sender: str | None = None  # `from` of a message
    recipient: str | None = None  # `recipient_id` of a status
    media_id: str | None = None
    media_sha256: str | None = None  # base64, as the webhook carries it
    timestamp: str | None = None
    position: int = 0
    phone_number_id: str | None = None


def now_ts() -> str:
    """A timestamp in Meta's form: Unix seconds as a string."""
    return str(int(time.time()))


def dumps(payload: Payload) -> bytes:
    """Meta's wire form: compact JSON, non-ASCII escaped as lowercase `\\uXXXX`.

    The signature covers these exact bytes, so emit and sign the same bytes.
    """
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sha256_b64(data: bytes) -> str:
    """A media sha256 as webhooks carry it (base64 of the digest)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# -- envelopes ---------------------------------------------------------------------------


def envelope(account: BusinessAccount, value: Payload, field: str = "messages") -> Payload:
    """Wrap one change value in `{"object", "entry": [{"id", "changes": [...]}]}`."""
    return {
        "object": OBJECT,
        "entry": [{"id": account.waba_id, "changes": [{"value": value, "field": field}]}],
    }


def contact(wa_id: str, name: str) -> Payload:
    """A `contacts[]` item: the user's profile name and wa_id."""
    return {"profile": {"name": name}, "wa_id": wa_id}


def messages_value(
    account: BusinessAccount, messages: Sequence[Payload], contacts: Sequence[Payload]
) -> Payload:
    """The change value of inbound messages (system messages go without contacts)."""
    value: Payload = {"messaging_product": "whatsapp", "metadata": account.metadata()}
    if contacts:
        value["contacts"] = list(contacts)
    value["messages"] = list(messages)
    return value


def statuses_value(account: BusinessAccount, statuses: Sequence[Payload]) -> Payload:
    """The change value carrying `statuses[]`."""
    return {
        "messaging_product": "whatsapp",
        "metadata": account.metadata(),
        "statuses": list(statuses),
    }


def inbound_webhook(
    account: BusinessAccount, message: Payload, profile_name: str = "Test User"
) -> Payload:
    """A whole webhook body for one inbound message from `message["from"]`."""
    contacts = [] if message.get("type") == "system" else [contact(message["from"], profile_name)]
    return envelope(account, messages_value(account, [message], contacts))


def status_webhook(account: BusinessAccount, statuses: Sequence[Payload]) -> Payload:
    """A whole webhook body for status updates."""
    return envelope(account, statuses_value(account, statuses))


def merge(payloads: Iterable[Payload]) -> Payload:
    """Batch several webhook bodies into one POST, as Meta may (up to 1000 updates).

    Entries of the same WABA share one entry; each change keeps its own value.
    """
    entries: dict[str, Payload] = {}
    for payload in payloads:
        for entry in payload.get("entry", []):
            target = entries.setdefault(entry["id"], {"id": entry["id"], "changes": []})
            target["changes"].extend(entry.get("changes", []))
    return {"object": OBJECT, "entry": list(entries.values())}


# -- inbound messages --------------------------------------------------------------------


def message(
    type: str,
    sender: str,
    body: Payload | list[Any] | None = None,
    *,
    wamid: str | None = None,
    timestamp: str | None = None,
    context: Payload | None = None,
) -> Payload:
    """One inbound `messages[]` item of `type`, its sub-object under the type's key."""
    msg: Payload = {}
    if context:
        msg["context"] = context
    msg.update(
        {
            "from": sender,
            "id": wamid or new_wamid(sender),
            "timestamp": timestamp or now_ts(),
            "type": type,
        }
    )
    if body is not None:
        msg[type] = body
    return msg


def text_body(body: str) -> Payload:
    return {"body": body}


def media_body(
    kind: str,
    media_id: str,
    mime_type: str,
    sha256: str,
    *,
    caption: str | None = None,
    filename: str | None = None,
    url: str | None = None,
    voice: bool | None = None,
    animated: bool | None = None,
) -> Payload:
    """The sub-object of an inbound image/audio/video/document/sticker."""
    if kind not in MEDIA_TYPES:
        raise ValueError(f"not a media type: {kind!r}")
    obj: Payload = {}
    if caption is not None and kind in ("image", "video", "document"):
        obj["caption"] = caption
    if filename is not None and kind == "document":
        obj["filename"] = filename
    obj.update({"mime_type": mime_type, "sha256": sha256, "id": media_id})
    if url is not None:
        obj["url"] = url
    if kind == "audio":
        obj["voice"] = bool(voice)
    if kind == "sticker":
        obj["animated"] = bool(animated)
    return obj


def location_body(
    latitude: float, longitude: float, name: str | None = None, address: str | None = None
) -> Payload:
    obj: Payload = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        obj["name"] = name
    if address is not None:
        obj["address"] = address
    return obj


def button_reply_body(reply_id: str, title: str) -> Payload:
    return {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}


def list_reply_body(reply_id: str, title: str, description: str | None = None) -> Payload:
    reply: Payload = {"id": reply_id, "title": title}
    if description is not None:
        reply["description"] = description
    return {"type": "list_reply", "list_reply": reply}


def reaction_body(message_id: str, emoji: str) -> Payload:
    return {"message_id": message_id, "emoji": emoji}


# -- statuses ----------------------------------------------------------------------------


def status(
    wamid: str,
    value: str,
    recipient: str,
    *,
    timestamp: str | None = None,
    category: str = "service",
    conversation_id: str | None = None,
    with_pricing: bool = False,
    error: GraphError | None = None,
    biz_opaque_callback_data: str | None = None,
    api_version: str | None = None,
) -> Payload:
    """One `statuses[]` item shaped like Meta's for `value` (sent/delivered/read/failed).

    `conversation` rides on sent/delivered/read up to v23 and is dropped from v24 on;
    `pricing` rides on sent and on one of delivered/read (`with_pricing`).
    """
    if value not in (*STATUS_ORDER, "failed"):
        raise ValueError(f"not a status: {value!r}")
    ts = timestamp or now_ts()
    item: Payload = {"id": wamid, "status": value, "timestamp": ts, "recipient_id": recipient}
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if value == "failed":
        failure = error or GraphError(131026)
        item["errors"] = [failure.status_error()]
        return item
    if not _drops_conversation(api_version) and value in ("sent", "delivered", "read"):
        conversation: Payload = {"id": conversation_id or new_conversation_id()}
        if value == "sent":
            conversation["expiration_timestamp"] = str(int(ts) + 24 * 3600)
        conversation["origin"] = {"type": category}
        item["conversation"] = conversation
    if value == "sent" or with_pricing:
        item["pricing"] = {
            "billable": category != "service",
            "pricing_model": "PMP",
            "type": "free_customer_service" if category == "service" else "regular",
            "category": category,
        }
    return item


def _drops_conversation(api_version: str | None) -> bool:
    if not api_version:
        return False
    try:
        return float(api_version.lstrip("v")) >= 24.0
    except ValueError:
        return False


# -- indexing ----------------------------------------------------------------------------


def parse(body: bytes) -> Payload | None:
    """The webhook body as JSON, or None when it is not a WhatsApp webhook."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting is junk too
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        return None
    return payload


def changes(payload: Payload) -> Iterable[Payload]:
    """Every change value in a webhook body, in order."""
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if isinstance(value, dict):
                yield value


def _dicts(items: Any) -> list[Payload]:
    """The objects of a JSON array; anything else (junk a sender may post) is skipped."""
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _str(value: Any) -> str | None:
    """A string field as text: numbers (e.g. an integer timestamp) kept, junk dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def events(payload: Payload) -> list[WebhookEvent]:
    """Index a webhook body: one event per message, status and value-level error."""
    found: list[WebhookEvent] = []
    for value in changes(payload):
        metadata = value.get("metadata")
        phone_id = _str(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
        for msg in _dicts(value.get("messages")):
            mtype = _str(msg.get("type"))
            sub = msg.get(mtype) if mtype is not None else None
            media = sub if mtype in MEDIA_TYPES and isinstance(sub, dict) else {}
            found.append(
                WebhookEvent(
                    category="message",
                    type=mtype,
                    wamid=_str(msg.get("id")),
                    sender=_str(msg.get("from")),
                    media_id=_str(media.get("id")),
                    media_sha256=_str(media.get("sha256")),
                    timestamp=_str(msg.get("timestamp")),
                    position=len(found),
                    phone_number_id=phone_id,
                )
            )
        for st in _dicts(value.get("statuses")):
            found.append(
                WebhookEvent(
                    category="status",
                    type=_str(st.get("status")),
                    wamid=_str(st.get("id")),
                    recipient=_str(st.get("recipient_id")),
                    timestamp=_str(st.get("timestamp")),
                    position=len(found),
                    phone_number_id=phone_id,
                )
            )
        for err in _dicts(value.get("errors")):
            code = err.get("code")
            found.append(
                WebhookEvent(
                    category="error",
                    type=None if code is None else str(code),
                    position=len(found),
                    phone_number_id=phone_id,
                )
            )
    return found


def status_ids(payload: Payload) -> list[str]:
    """The wamids whose statuses a webhook body reports."""
    return [e.wamid for e in events(payload) if e.category == "status" and e.wamid]
