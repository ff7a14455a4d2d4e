"""Payload surgery: edit webhook bodies and Graph answers in place of Meta, by meaning.

Remove events (and what they leave empty), fail a status the way Meta reports a failed
send, point media objects at new bytes, shift timestamps. Everything is pure over
parsed payloads, URLs and bytes; mistakes raise `fields.PayloadError`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from . import webhooks
from .errors import GraphError
from .fields import PayloadError

Payload = dict[str, Any]

DEFAULT_FAIL_CODE = 131047  # re-engagement: more than 24 h since the user last wrote
_EVENT_KEYS = ("messages", "statuses", "errors")


@dataclass(frozen=True)
class Slot:
    """Where an indexed event lives in a payload: `value[key][index]`."""

    value: Payload
    key: str  # "messages" | "statuses" | "errors"
    index: int

    @property
    def item(self) -> Payload:
        item: Payload = self.value[self.key][self.index]
        return item


def slots(payload: Payload) -> list[Slot]:
    """Every indexed event of a webhook body, in `webhooks.events` order (same positions)."""
    found: list[Slot] = []
    for value in webhooks.changes(payload):
        for key in _EVENT_KEYS:
            items = value.get(key)
            if isinstance(items, list):
                found.extend(
                    Slot(value, key, i) for i, item in enumerate(items) if isinstance(item, dict)
                )
    return found


def remove_events(payload: Payload, positions: Iterable[int]) -> Payload | None:
    """A copy of `payload` without the events at `positions`; None when nothing is left.

    Emptied lists, changes and entries go; so does the `contacts[]` item of a sender
    who has no message left in that change.
    """
    out = copy.deepcopy(payload)
    places = slots(out)
    emptied: list[Payload] = []  # change values left without messages, statuses or errors
    for position in sorted(set(positions), reverse=True):
        slot = places[position]
        item = slot.value[slot.key].pop(slot.index)
        if slot.key == "messages":
            _forget_contact(slot.value, item.get("from"))
        if not slot.value[slot.key]:
            del slot.value[slot.key]
            if not any(k in slot.value for k in _EVENT_KEYS):
                emptied.append(slot.value)
    if not webhooks.events(out):
        return None
    entries = []
    for entry in out["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if isinstance(changes, list):
            kept = [
                c
                for c in changes
                if not (isinstance(c, dict) and any(c.get("value") is v for v in emptied))
            ]
            if not kept and changes:
                continue  # the entry held only emptied changes
            entry["changes"] = kept
        entries.append(entry)
    out["entry"] = entries
    return out


def _forget_contact(value: Payload, sender: Any) -> None:
    contacts = value.get("contacts")
    if not isinstance(contacts, list) or not isinstance(sender, str):
        return
    if any(isinstance(m, dict) and m.get("from") == sender for m in value.get("messages", [])):
        return
    kept = [c for c in contacts if not (isinstance(c, dict) and c.get("wa_id") == sender)]
    if kept:
        value["contacts"] = kept
    else:
        del value["contacts"]


def failed_status(item: Payload, code: int = DEFAULT_FAIL_CODE) -> Payload:
    """A status item turned into `failed` with the error object Meta puts there.

    `conversation` and `pricing` go (Meta sends neither on failures); id, timestamp,
    recipient and `biz_opaque_callback_data` stay.
    """
    out = {k: v for k, v in item.items() if k not in ("conversation", "pricing", "errors")}
    out["status"] = "failed"
    out["errors"] = [GraphError(code).status_error()]
    return out


def swap_media_fields(payload: Payload, media_id: str, mime_type: str, sha256_b64: str) -> int:
    """Point every inbound media object naming `media_id` at new bytes (in place); how many."""
    changed = 0
    for value in webhooks.changes(payload):
        for msg in webhooks._dicts(value.get("messages")):
            mtype = msg.get("type")
            sub = msg.get(mtype) if isinstance(mtype, str) else None
            if (
                mtype in webhooks.MEDIA_TYPES
                and isinstance(sub, dict)
                and sub.get("id") == media_id
            ):
                sub["mime_type"] = mime_type
                sub["sha256"] = sha256_b64
                changed += 1
    return changed


def swap_media_answer(
    body: bytes, media_id: str, mime_type: str, sha_hex: str, size: int
) -> bytes | None:
    """A recorded `GET /{media_id}` answer with the new blob's metadata; None if not one."""
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(answer, dict) or answer.get("id") != media_id or "sha256" not in answer:
        return None
    answer["mime_type"] = mime_type
    answer["sha256"] = sha_hex  # hex in Graph's media metadata
    answer["file_size"] = str(size) if isinstance(answer.get("file_size"), str) else size
    return json.dumps(answer, separators=(",", ":")).encode()


def is_download_of(url: str, media_id: str) -> bool:
    """True when `url` downloads `media_id`: a media URL naming it as `mid`, or the seed
    contract's `/media/download/{id}`."""
    parts = urlsplit(url)
    if parse_qs(parts.query).get("mid") == [media_id]:
        return True
    return parts.path.rstrip("/").endswith(f"/media/download/{media_id}")


def shift_timestamp(value: Any, seconds: int) -> Any:
    """A Meta timestamp (Unix seconds as a string, or a number) moved by `seconds`."""
    if isinstance(value, str) and value.isdigit():
        shifted = int(value) + seconds
    elif isinstance(value, int) and not isinstance(value, bool):
        shifted = value + seconds
    else:
        return value
    if shifted < 0:
        raise PayloadError(f"timestamp {value} shifted by {seconds} s would be negative")
    return str(shifted) if isinstance(value, str) else shifted


def shift_payload_timestamps(payload: Payload, seconds: int) -> int:
    """Shift message and status timestamps (and a status's conversation expiry) in place."""
    changed = 0
    for value in webhooks.changes(payload):
        for key in ("messages", "statuses"):
            for item in webhooks._dicts(value.get(key)):
                if "timestamp" in item:
                    item["timestamp"] = shift_timestamp(item["timestamp"], seconds)
                    changed += 1
                conversation = item.get("conversation")
                if isinstance(conversation, dict) and "expiration_timestamp" in conversation:
                    conversation["expiration_timestamp"] = shift_timestamp(
                        conversation["expiration_timestamp"], seconds
                    )
    return changed
