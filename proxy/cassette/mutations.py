"""Meaning-level cassette mutations: craft edge cases by wamid and media id, never by bytes.

Two layers:

* **Pure payload logic** (no I/O): a `Tape` is a cassette's exchanges with the events
  indexed from its webhook bodies; the `plan_*` functions turn a tape into a `Change`
  (the new exchange list, media to store, a one-line summary) and raise
  `MutationError` on anything that does not make sense, before anything is written.
  Message fields are checked against `MESSAGE_FIELDS`, the shapes of Meta's inbound
  message types (whatsapp-cloud-api.md §2.3).
* **The store shell**: one function per operation, `op(store, name, ..., out=None,
  in_place=False) -> MutationResult`. It reads cassette `name`, plans, then writes a new
  cassette `out` (a copy of `name`, then changed; source "mutated") or, with `in_place`,
  `name` itself, and appends the operation with its arguments to the history.

Events are addressed as `store.events(name)` lists them: by index (`3`, `"3"`, `"#3"`,
0-based, in delivery order) or by wamid. An index names one delivery of one event. A
wamid names its first event (a message before a status when both carry it); operations
that edit content (`drop`, `set_field`, `fail_status`) apply to every identical copy of
that event, so Meta-style duplicates stay byte-identical, while the ones that act on a
delivery (`duplicate`, `move`, `delay`, the signature ones) take the first copy.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import mimetypes
import re
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Literal

from pseudowa.addons.redact import Pseudonymizer
from pseudowa.proxy.errors import MutationError
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Event
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore
from pseudowa.storage.store import validate_name

from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.contract.webhooks import WebhookEvent
from pseudowa.proxy.sandbox.replay import SIGNING_ANNOTATION
from pseudowa.proxy.sandbox.replay import recorded_send_wamids

Payload = dict[str, Any]
EventRef = int | str

DEFAULT_FAIL_CODE = 131047  # re-engagement: more than 24 h since the user last wrote
ADD_GAP_S = 1.0  # an added message without a time comes this long after the last exchange
DEFAULT_PROFILE_NAME = "Test User"
PLACEHOLDER_BOT_URL = "http://bot.invalid/webhook"
MUTATION_ANNOTATION = "mutation"


# -- message shapes ------------------------------------------------------------------------

FieldKind = Literal["string", "number", "boolean", "timestamp", "phone"]

_MEDIA: dict[str, FieldKind] = {"mime_type": "string", "sha256": "string", "id": "string",
                                "url": "string"}
_REFERRAL = ("source_url", "source_id", "source_type", "body", "headline", "media_type",
             "image_url", "video_url", "thumbnail_url", "ctwa_clid")


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
    "location": _sub("location", {"latitude": "number", "longitude": "number", "name": "string",
                                  "address": "string", "url": "string"}),
    "button": _sub("button", {"payload": "string", "text": "string"}),
    "reaction": _sub("reaction", {"message_id": "string", "emoji": "string"}),
    "order": _sub("order", {"catalog_id": "string", "text": "string"}),
    "system": _sub("system", {"body": "string", "wa_id": "phone", "type": "string"}),
}

# Interactive replies: the fields depend on `interactive.type`.
INTERACTIVE_FIELDS: dict[str, dict[str, FieldKind]] = {
    "button_reply": _sub("interactive.button_reply", {"id": "string", "title": "string"}),
    "list_reply": _sub("interactive.list_reply", {"id": "string", "title": "string",
                                                  "description": "string"}),
    "nfm_reply": _sub("interactive.nfm_reply", {"name": "string", "body": "string",
                                                "response_json": "string"}),
}

_RANGES = {"location.latitude": (-90.0, 90.0), "location.longitude": (-180.0, 180.0)}


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
        raise MutationError(f"{path} takes a string, not {shown}")
    if kind in ("phone", "timestamp"):
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        digits = text[1:] if kind == "phone" and isinstance(text, str) and text[:1] == "+" else text
        if isinstance(text, str) and isinstance(digits, str) and digits.isdigit():
            return text
        what = "a phone number (digits)" if kind == "phone" else "Unix seconds (digits, a string)"
        raise MutationError(f"{path} takes {what}, not {shown!r}")
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
    if kind == "boolean":
        if isinstance(parsed, bool):
            return parsed
        raise MutationError(f"{path} takes true or false, not {shown!r}")
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)) or not math.isfinite(parsed):
        raise MutationError(f"{path} takes a number, not {shown!r}")
    low, high = _RANGES.get(path, (-math.inf, math.inf))
    if not low <= parsed <= high:
        raise MutationError(f"{path} must lie between {low:g} and {high:g}, not {parsed}")
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
        raise MutationError(
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


# -- payload surgery -----------------------------------------------------------------------


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
        for key in ("messages", "statuses", "errors"):
            items = value.get(key)
            if isinstance(items, list):
                found.extend(Slot(value, key, i) for i, item in enumerate(items)
                             if isinstance(item, dict))
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
            if not any(k in slot.value for k in ("messages", "statuses", "errors")):
                emptied.append(slot.value)
    if not webhooks.events(out):
        return None
    entries = []
    for entry in out["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if isinstance(changes, list):
            kept = [c for c in changes
                    if not (isinstance(c, dict) and any(c.get("value") is v for v in emptied))]
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
            if mtype in webhooks.MEDIA_TYPES and isinstance(sub, dict) and sub.get("id") == media_id:
                sub["mime_type"] = mime_type
                sub["sha256"] = sha256_b64
                changed += 1
    return changed


def shift_timestamp(value: Any, seconds: int) -> Any:
    """A Meta timestamp (Unix seconds as a string, or a number) moved by `seconds`."""
    if isinstance(value, str) and value.isdigit():
        shifted = int(value) + seconds
    elif isinstance(value, int) and not isinstance(value, bool):
        shifted = value + seconds
    else:
        return value
    if shifted < 0:
        raise MutationError(f"timestamp {value} shifted by {seconds} s would be negative")
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


# -- new messages --------------------------------------------------------------------------

MEDIA_KINDS = webhooks.MEDIA_TYPES
ADD_KINDS = ("text", *MEDIA_KINDS, "location", "button_reply", "list_reply", "reaction")


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
            raise MutationError(f"a {kind} message needs {name}")
        return value

    def typed(path: str, fkind: FieldKind, name: str) -> Any:
        return coerce_value(path, fkind, need(name))

    body: Payload
    mtype = kind
    if kind == "text":
        body = webhooks.text_body(typed("text.body", "string", "body"))
    elif kind in MEDIA_KINDS:
        body = webhooks.media_body(
            kind, need("media_id"), need("mime_type"), need("sha256"),
            caption=fields.get("caption"), filename=fields.get("filename"),
            voice=fields.get("voice"), animated=fields.get("animated"),
        )
    elif kind == "location":
        body = webhooks.location_body(
            typed("location.latitude", "number", "latitude"),
            typed("location.longitude", "number", "longitude"),
            fields.get("name"), fields.get("address"),
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
        raise MutationError(f"cannot add a {kind!r} message; kinds: {', '.join(ADD_KINDS)}")
    return webhooks.message(mtype, sender, body, wamid=wamid, timestamp=timestamp, context=context)


# -- the tape: a cassette as mutations see it ----------------------------------------------


def is_webhook_post(x: Exchange) -> bool:
    return str(x.kind) == Kind.WEBHOOK.value and x.method.upper() == "POST"


def index_exchange(x: Exchange) -> list[WebhookEvent]:
    """The events the store indexes for an exchange (webhook POST bodies only)."""
    payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
    return webhooks.events(payload) if payload else []


def index_exchanges(exchanges: Sequence[Exchange]) -> list[Event]:
    """`store.events` as it would list these exchanges (seq = position when unset)."""
    found: list[Event] = []
    for i, x in enumerate(exchanges):
        seq = x.seq if x.seq >= 0 else i
        for e in index_exchange(x):
            found.append(Event.indexed(e, seq))
    return found


def describe(event: Event, index: int) -> str:
    """`message text wamid.X (#3)`: an event as the summaries name it."""
    parts = [event.category, event.type or "-"]
    if event.wamid:
        parts.append(event.wamid)
    return f"{' '.join(parts)} (#{index})"


def parse_ref(ref: EventRef) -> int | str:
    """An index (`3`, `"3"`, `"#3"`) or a wamid."""
    if isinstance(ref, bool):
        raise MutationError(f"not an event: {ref!r}")
    if isinstance(ref, int):
        return ref
    text = ref.strip()
    digits = text[1:] if text.startswith("#") else text
    if digits.isdigit():
        return int(digits)
    if not text or text.startswith("#"):
        raise MutationError(f"not an event: {ref!r}; give an index like #3 or a wamid")
    return text


def closest(word: str, candidates: Iterable[str], what: str, n: int = 3) -> str:
    """`; did you mean a, b?` (difflib), else a few of the candidates, for error messages."""
    pool = list(dict.fromkeys(c for c in candidates if c))
    close = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    if close:
        return "; did you mean " + ", ".join(close) + "?"
    if pool:
        more = f" (and {len(pool) - n} more)" if len(pool) > n else ""
        return f"; {what}: " + ", ".join(pool[:n]) + more
    return f"; the cassette has no {what}"


@dataclass(frozen=True)
class Target:
    """A resolved event: its index in the event list and where its delivery is."""

    index: int
    event: Event
    exchange: int  # position in Tape.exchanges

    def __str__(self) -> str:
        return describe(self.event, self.index)


@dataclass
class Tape:
    """A cassette's exchanges in order, with the events indexed from its webhooks."""

    name: str
    exchanges: list[Exchange]
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.events:  # not read from a store: number the exchanges by position
            self.exchanges = [dataclasses.replace(x, seq=i) for i, x in enumerate(self.exchanges)]
            self.events = index_exchanges(self.exchanges)
        self._by_seq = {x.seq: i for i, x in enumerate(self.exchanges)}

    def target(self, index: int) -> Target:
        event = self.events[index]
        return Target(index, event, self._by_seq[event.interaction_seq])

    def resolve(self, ref: EventRef, prefer: Sequence[str] = ("message", "status")) -> Target:
        """The event an index or wamid names (for a wamid: its first, `prefer`red first)."""
        key = parse_ref(ref)
        if isinstance(key, int):
            if not 0 <= key < len(self.events):
                n = len(self.events)
                span = f"it has {n}: #0 to #{n - 1}" if n else "it has none"
                raise MutationError(f"cassette {self.name!r} has no event #{key} ({span})")
            return self.target(key)
        matches = [i for i, e in enumerate(self.events) if e.wamid == key]
        if not matches:
            hint = closest(key, (e.wamid or "" for e in self.events), "wamids")
            raise MutationError(f"cassette {self.name!r} has no event with wamid {key!r}{hint}")
        for category in prefer:
            chosen = [i for i in matches if self.events[i].category == category]
            if chosen:
                return self.target(chosen[0])
        return self.target(matches[0])

    def targets(self, ref: EventRef, prefer: Sequence[str] = ("message", "status")) -> list[Target]:
        """For a wamid: every copy of the event it names (same wamid, category, type);
        for an index: that one event."""
        first = self.resolve(ref, prefer)
        if isinstance(parse_ref(ref), int) or first.event.wamid is None:
            return [first]
        e = first.event
        return [
            self.target(i) for i, other in enumerate(self.events)
            if (other.wamid, other.category, other.type) == (e.wamid, e.category, e.type)
        ]

    def payload(self, position: int) -> Payload:
        payload = webhooks.parse(self.exchanges[position].request_body)
        if payload is None:  # indexed events come from parsed bodies, so this is a bug
            raise MutationError(f"exchange #{position} of {self.name!r} is not a webhook body")
        return payload

    @property
    def start(self) -> float:
        return min((x.started_at for x in self.exchanges), default=time.time())

    @property
    def end(self) -> float:
        return max((max(x.started_at, x.finished_at) for x in self.exchanges), default=time.time())

    def account(self) -> BusinessAccount:
        """The business side as the cassette's webhooks name it (else the defaults)."""
        default = BusinessAccount()
        for x in self.exchanges:
            payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
            for entry in webhooks._dicts(payload.get("entry")) if payload else []:
                for change in webhooks._dicts(entry.get("changes")):
                    value = change.get("value")
                    meta = value.get("metadata") if isinstance(value, dict) else None
                    if isinstance(meta, dict) and isinstance(entry.get("id"), str):
                        return BusinessAccount(
                            waba_id=entry["id"],
                            phone_number_id=str(meta.get("phone_number_id")
                                                or default.phone_number_id),
                            display_phone_number=str(meta.get("display_phone_number")
                                                     or default.display_phone_number),
                        )
        return default

    def profile_name(self, wa_id: str) -> str:
        for x in self.exchanges:
            payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
            for value in webhooks.changes(payload) if payload else []:
                for c in webhooks._dicts(value.get("contacts")):
                    profile = c.get("profile")
                    if c.get("wa_id") == wa_id and isinstance(profile, dict):
                        name = profile.get("name")
                        if isinstance(name, str):
                            return name
        return DEFAULT_PROFILE_NAME

    def webhook_url(self) -> str:
        return next((x.url for x in self.exchanges if is_webhook_post(x)), PLACEHOLDER_BOT_URL)


@dataclass
class Change:
    """What a mutation does: the new exchanges (None: unchanged), media to store, a summary."""

    summary: str
    exchanges: list[Exchange] | None = None
    media: list[tuple[str, bytes, str]] = field(default_factory=list)  # (media id, bytes, mime)
    details: dict[str, Any] = field(default_factory=dict)


def by_time(exchanges: Iterable[Exchange]) -> list[Exchange]:
    """Stable sort by start time: replay delivers webhooks in this order at speed 0."""
    return sorted(exchanges, key=lambda x: x.started_at)


def shifted(x: Exchange, seconds: float) -> Exchange:
    return dataclasses.replace(x, started_at=x.started_at + seconds,
                               finished_at=x.finished_at + seconds)


def with_body(x: Exchange, body: bytes) -> Exchange:
    """`x` carrying a new request body: lengths fixed, the stale recorded signature gone."""
    if body == x.request_body:
        return x
    stale = {signature.HEADER.lower(), signature.LEGACY_HEADER.lower()}
    headers = [(k, str(len(body)) if k.lower() == "content-length" else v)
               for k, v in x.request_headers if k.lower() not in stale]
    return dataclasses.replace(x, request_body=body, request_headers=headers)


def _with_response(x: Exchange, body: bytes) -> Exchange:
    headers = [(k, str(len(body)) if k.lower() == "content-length" else v)
               for k, v in x.response_headers]
    return dataclasses.replace(x, response_body=body, response_headers=headers)


def _annotate(x: Exchange, **notes: str) -> Exchange:
    return dataclasses.replace(x, annotations={**x.annotations, **notes})


def edit_events(
    tape: Tape,
    edits: dict[int, list[tuple[int, Callable[[Payload], Payload]]]],
    removals: dict[int, list[int]] | None = None,
) -> list[Exchange]:
    """Apply item edits (exchange -> [(position, fn)]) then removals (exchange -> positions).

    An exchange whose every event is removed leaves the cassette.
    """
    removals = removals or {}
    out: list[Exchange] = []
    for i, x in enumerate(tape.exchanges):
        if i not in edits and i not in removals:
            out.append(x)
            continue
        payload = tape.payload(i)
        places = slots(payload)
        for position, fn in edits.get(i, []):
            slot = places[position]
            slot.value[slot.key][slot.index] = fn(slot.item)
        left = remove_events(payload, removals[i]) if i in removals else payload
        if left is not None:
            out.append(with_body(x, webhooks.dumps(left)))
    return out


# -- plans (pure) --------------------------------------------------------------------------


def plan_duplicate(tape: Tape, ref: EventRef, times: int = 1, gap_s: float = 0.0) -> Change:
    if times < 1:
        raise MutationError(f"times must be at least 1, not {times}")
    if gap_s < 0 or not math.isfinite(gap_s):
        raise MutationError(f"gap must be a number of seconds >= 0, not {gap_s}")
    t = tape.resolve(ref)
    out: list[Exchange] = []
    for i, x in enumerate(tape.exchanges):
        out.append(x)
        if i == t.exchange:  # same bytes; only the time (and a note) differ
            out.extend(_annotate(shifted(x, k * gap_s), **{MUTATION_ANNOTATION: "duplicate"})
                       for k in range(1, times + 1))
    plural = "time" if times == 1 else "times"
    gap = f", {gap_s:g} s apart" if gap_s else ""
    return Change(f"duplicated the webhook carrying {t}: delivered {times} more {plural}{gap}",
                  by_time(out), details={"wamid": t.event.wamid})


def plan_drop(tape: Tape, ref: EventRef) -> Change:
    targets = tape.targets(ref)
    removals: dict[int, list[int]] = {}
    for t in targets:
        removals.setdefault(t.exchange, []).append(t.event.position)
    out = edit_events(tape, {}, removals)
    gone = len(tape.exchanges) - len(out)
    copies = f" ({len(targets)} copies)" if len(targets) > 1 else ""
    webhooks_note = f"; {gone} webhook{'s' if gone != 1 else ''} removed" if gone else \
        "; its webhook rewritten without it"
    return Change(f"dropped {targets[0]}{copies}{webhooks_note}", out,
                  details={"wamid": targets[0].event.wamid})


def plan_move(tape: Tape, ref: EventRef, *, before: EventRef | None = None,
              after: EventRef | None = None) -> Change:
    if (before is None) == (after is None):
        raise MutationError("move needs exactly one of before or after")
    t = tape.resolve(ref)
    anchor_ref = before if before is not None else after
    assert anchor_ref is not None
    anchor = tape.resolve(anchor_ref)
    if anchor.exchange == t.exchange:
        raise MutationError(f"{t} and {anchor} travel in the same webhook; nothing to reorder")
    moving = tape.exchanges[t.exchange]
    other = tape.exchanges[anchor.exchange]
    # The moved delivery takes the anchor's time; a stable sort keeps it on its side.
    moved = shifted(moving, other.started_at - moving.started_at)
    rest = [x for i, x in enumerate(tape.exchanges) if i != t.exchange]
    at = rest.index(other) + (0 if before is not None else 1)
    rest.insert(at, moved)
    where = "before" if before is not None else "after"
    return Change(f"moved {t} {where} {anchor}", by_time(rest),
                  details={"wamid": t.event.wamid})


def plan_delay(tape: Tape, ref: EventRef, seconds: float) -> Change:
    if not math.isfinite(seconds):
        raise MutationError(f"delay must be a number of seconds, not {seconds}")
    t = tape.resolve(ref)
    out = [shifted(x, seconds) if i == t.exchange else x for i, x in enumerate(tape.exchanges)]
    return Change(f"delayed the webhook carrying {t} by {seconds:g} s", by_time(out),
                  details={"wamid": t.event.wamid})


def plan_set_field(tape: Tape, ref: EventRef, path: str, value: Any) -> Change:
    targets = tape.targets(ref, prefer=("message",))
    first = targets[0]
    if first.event.category != "message":
        raise MutationError(f"{first} is a {first.event.category}, not a message; set edits "
                            "fields of inbound messages")
    message = slots(tape.payload(first.exchange))[first.event.position].item
    new = set_message_field(message, path, value)  # validates before anything else
    edits: dict[int, list[tuple[int, Callable[[Payload], Payload]]]] = {}
    for t in targets:
        edits.setdefault(t.exchange, []).append(
            (t.event.position, lambda item: set_message_field(item, path, value)))
    copies = f" ({len(targets)} copies)" if len(targets) > 1 else ""
    shown = json.dumps(_get(new, path), ensure_ascii=False)
    return Change(f"set {path} = {shown} in {first}{copies}", edit_events(tape, edits),
                  details={"wamid": first.event.wamid})


def _get(item: Payload, path: str) -> Any:
    node: Any = item
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def plan_fail_status(tape: Tape, ref: EventRef, code: int = DEFAULT_FAIL_CODE) -> Change:
    targets = tape.targets(ref, prefer=("status",))
    first = targets[0]
    if first.event.category != "status":
        raise MutationError(f"{first} is a {first.event.category}, not a status; fail-status "
                            "takes a status event (its index, or the wamid of a send)")
    edits: dict[int, list[tuple[int, Callable[[Payload], Payload]]]] = {}
    for t in targets:
        edits.setdefault(t.exchange, []).append(
            (t.event.position, lambda item: failed_status(item, code)))
    # A failed message is never delivered or read: later such statuses go.
    removals: dict[int, list[int]] = {}
    later = [
        tape.target(i) for i, e in enumerate(tape.events)
        if i > first.index and e.wamid == first.event.wamid and e.category == "status"
        and e.type in ("delivered", "read", "played")
    ]
    for t in later:
        removals.setdefault(t.exchange, []).append(t.event.position)
    title = GraphError(code).title
    removed = f"; {len(later)} later delivered/read status{'es' if len(later) != 1 else ''} " \
        "removed" if later else ""
    return Change(f"failed {first} with #{code} {title}{removed}",
                  edit_events(tape, edits, removals), details={"wamid": first.event.wamid})


def plan_signature(tape: Tape, ref: EventRef, mode: Literal["bad", "none"]) -> Change:
    t = tape.resolve(ref)
    out = [_annotate(x, **{SIGNING_ANNOTATION: mode}) if i == t.exchange else x
           for i, x in enumerate(tape.exchanges)]
    what = "a wrong signature" if mode == "bad" else "no signature"
    return Change(f"the webhook carrying {t} will be delivered with {what}", out,
                  details={"wamid": t.event.wamid})


def plan_shift_timestamps(tape: Tape, seconds: int) -> Change:
    out: list[Exchange] = []
    changed = 0
    for x in tape.exchanges:
        payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
        if payload is None:
            out.append(x)
            continue
        n = shift_payload_timestamps(payload, seconds)
        changed += n
        out.append(with_body(x, webhooks.dumps(payload)) if n else x)
    return Change(f"shifted {changed} message/status timestamps by {seconds:+d} s", out,
                  details={"timestamps": changed})


def plan_swap_media(tape: Tape, media_id: str, data: bytes, mime_type: str) -> Change:
    import hashlib

    sha_hex = hashlib.sha256(data).hexdigest()
    sha_b64 = webhooks.sha256_b64(data)
    out: list[Exchange] = []
    counts = {"webhook": 0, "graph": 0, "media": 0}
    for x in tape.exchanges:
        new = x
        if is_webhook_post(x):
            payload = webhooks.parse(x.request_body)
            if payload is not None and swap_media_fields(payload, media_id, mime_type, sha_b64):
                new = with_body(x, webhooks.dumps(payload))
                counts["webhook"] += 1
        elif str(x.kind) == Kind.GRAPH.value:
            body = swap_media_answer(x.response_body, media_id, mime_type, sha_hex, len(data))
            if body is not None:
                new = _with_response(x, body)
                counts["graph"] += 1
        elif str(x.kind) == Kind.MEDIA.value and _downloads(x, media_id):
            new = swap_download(x, data, mime_type, sha_hex)
            counts["media"] += 1
        out.append(new)
    where = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no exchange"
    return Change(
        f"media {media_id} now {len(data)} B {mime_type} sha256 {sha_hex[:12]}… ({where} updated)",
        out, media=[(media_id, data, mime_type)],
        details={"media_id": media_id, "sha256": sha_hex, "size": len(data)},
    )


def swap_media_answer(body: bytes, media_id: str, mime_type: str, sha_hex: str,
                      size: int) -> bytes | None:
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


def _downloads(x: Exchange, media_id: str) -> bool:
    """True when a media exchange downloads `media_id` (mid in the URL, path, annotation)."""
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    parts = urlsplit(x.url)
    if parse_qs(parts.query).get("mid") == [media_id]:
        return True
    if parts.path.rstrip("/").endswith(f"/media/download/{media_id}"):
        return True
    return x.annotations.get("media_id") == media_id


def swap_download(x: Exchange, data: bytes, mime_type: str, sha_hex: str) -> Exchange:
    """A recorded download of the media, describing (or carrying) the new bytes."""
    headers = []
    for k, v in x.response_headers:
        if k.lower() == "content-type":
            v = mime_type
        elif k.lower() == "content-length":
            v = str(len(data))
        headers.append((k, v))
    notes = dict(x.annotations)
    for key in ("sha256", "media_sha256"):
        if key in notes and notes[key] != "unknown":
            notes[key] = sha_hex
    if "media_size" in notes:
        notes["media_size"] = str(len(data))
    if "mime_type" in notes:
        notes["mime_type"] = mime_type
    body = data if x.response_body else b""  # bytes kept with the exchange only when they were
    return dataclasses.replace(x, response_headers=headers, response_body=body, annotations=notes)


def plan_add(
    tape: Tape,
    kind: str,
    *,
    sender: str | None = None,
    at: float | None = None,
    after: EventRef | None = None,
    reply_to: str | None = None,
    **fields: Any,
) -> Change:
    """Append a new inbound message webhook (fresh wamid) at `at` s from the cassette's start,
    right after the delivery of event `after`, or `ADD_GAP_S` after the last exchange."""
    if at is not None and after is not None:
        raise MutationError("give at or after, not both")
    if kind not in ADD_KINDS:
        raise MutationError(f"cannot add a {kind!r} message; kinds: {', '.join(ADD_KINDS)}")
    if "id" in fields and "reply_id" not in fields:  # add_event(..., "button_reply", id=...)
        fields["reply_id"] = fields.pop("id")
    if sender is None:
        sender = next((e.sender for e in tape.events if e.category == "message" and e.sender),
                      None)
        if sender is None:
            raise MutationError(f"cassette {tape.name!r} has no inbound message to take a sender "
                                "from; give the sender's number")
    sender = coerce_value("from", "phone", sender)
    account = tape.account()
    anchor: Target | None = None
    if after is not None:
        anchor = tape.resolve(after)
        x = tape.exchanges[anchor.exchange]
        when = max(x.started_at, x.finished_at)
    elif at is not None:
        if not math.isfinite(at):
            raise MutationError(f"at must be a number of seconds, not {at}")
        when = tape.start + at
    else:
        when = tape.end + ADD_GAP_S if tape.exchanges else time.time()
    sends = recorded_send_wamids(tape.exchanges)
    last_send = max(sends, key=lambda w: sends[w]) if sends else None
    if kind == "reaction" and not fields.get("message_id"):
        if last_send is None:
            raise MutationError("a reaction needs the wamid of the message it reacts to")
        fields["message_id"] = last_send
    if reply_to is None and kind in ("button_reply", "list_reply"):
        reply_to = last_send  # Meta's interactive replies quote the message with the buttons
    context = {"from": account.display_phone_number, "id": reply_to} if reply_to else None
    wamid = new_wamid(sender)
    message = build_message(kind, sender, wamid=wamid, timestamp=str(int(when)), context=context,
                            **fields)
    payload = webhooks.inbound_webhook(account, message, tape.profile_name(sender))
    new = Exchange(
        kind=Kind.WEBHOOK.value, method="POST", url=tape.webhook_url(),
        request_headers=[("Content-Type", "application/json")],
        request_body=webhooks.dumps(payload), response_status=200, response_body=b"",
        started_at=when, finished_at=when + 0.01, annotations={MUTATION_ANNOTATION: "add"},
    )
    out = list(tape.exchanges)
    out.insert(anchor.exchange + 1 if anchor is not None else len(out), new)
    where = f"after {anchor}" if anchor else f"at +{when - tape.start:.3f} s" if tape.exchanges \
        else "as the first exchange"
    label = kind.replace("_", " ")
    return Change(f"added {label} message {wamid} from {sender} {where}", by_time(out),
                  details={"wamid": wamid})


def plan_pseudonymize(tape: Tape, seed: str | int | None = None) -> Change:
    pz = Pseudonymizer(seed)
    pz.keep(_display_numbers(tape.exchanges))
    out: list[Exchange] = []
    bodies = 0
    for x in tape.exchanges:
        if str(x.kind) not in (Kind.WEBHOOK.value, Kind.GRAPH.value):
            out.append(x)
            continue
        request = pz.rewrite_body(x.request_body)
        response = pz.rewrite_body(x.response_body)
        new = with_body(x, request)
        if response != x.response_body:
            new = _with_response(new, response)
        label = x.annotations.get("label")
        if label:
            new = _annotate(new, label=_WAMID_RE.sub(lambda m: pz.wamid(m.group(0)), label))
        bodies += (request != x.request_body) + (response != x.response_body)
        out.append(new)
    n = len(pz.phones)
    return Change(f"pseudonymized {n} phone number{'s' if n != 1 else ''} "
                  f"(with their names and wamids) in {bodies} bodies", out,
                  details={"numbers": n, "bodies": bodies})


_WAMID_RE = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")


def _display_numbers(exchanges: Iterable[Exchange]) -> list[str]:
    """The business's own numbers (`display_phone_number`), kept by pseudonymization."""
    found: list[str] = []
    for x in exchanges:
        payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
        for value in webhooks.changes(payload) if payload else []:
            meta = value.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("display_phone_number"), str):
                found.append(meta["display_phone_number"])
    return found


# -- the store shell -----------------------------------------------------------------------


@dataclass(frozen=True)
class MutationResult:
    """What a mutation did and where it wrote."""

    cassette: str  # the cassette written
    source: str  # the cassette read
    operation: str
    summary: str
    arguments: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def in_place(self) -> bool:
        return self.cassette == self.source

    def line(self) -> str:
        """One line for the CLI: what changed and where it was written."""
        where = f"cassette {self.cassette} (in place)" if self.in_place else \
            f"new cassette {self.cassette} (from {self.source})"
        return f"{self.summary}; wrote {where}"


def _target_name(store: CassetteStore, name: str, out: str | None, in_place: bool) -> str:
    if in_place and out:
        raise MutationError("give out (a new cassette) or in_place, not both")
    if not in_place and not out:
        raise MutationError("give out (a new cassette to write) or in_place=True")
    store.get_cassette(name)  # CassetteNotFound names the closest ones
    if in_place:
        return name
    assert out is not None
    validate_name(out)
    if store.exists(out):
        raise CassetteExists(out)
    return out


def _apply(
    store: CassetteStore,
    name: str,
    out: str | None,
    in_place: bool,
    operation: str,
    arguments: dict[str, Any],
    plan: Callable[[Tape], Change],
) -> MutationResult:
    """Plan against the source (errors raise before any write), then write and log."""
    target = _target_name(store, name, out, in_place)
    tape = Tape(name, list(store.interactions(name)), store.events(name))
    change = plan(tape)
    created = False
    try:
        if target != name:
            store.copy_cassette(name, target, source=Source.MUTATED.value)
            created = True
        else:
            store.update_cassette(name, source=Source.MUTATED.value)
        for media_id, data, mime in change.media:
            blob = store.put_media(data, mime)
            store.link_media(target, media_id, blob.sha256, mime)
        if change.exchanges is not None:
            store.replace_interactions(target, [(x, index_exchange(x)) for x in change.exchanges])
        logged = {k: v for k, v in arguments.items() if v is not None}
        store.add_history(target, operation, {**logged, **_jsonable(change.details)})
    except BaseException:
        if created:
            try:
                store.delete_cassette(target)
            except StoreError:
                pass
        raise
    return MutationResult(target, name, operation, change.summary, arguments, change.details)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if v is not None}


def _ref(ref: EventRef) -> str:
    return f"#{ref}" if isinstance(ref, int) else ref


def duplicate(store: CassetteStore, name: str, event: EventRef, times: int = 1,
              gap_s: float = 0.0, *, out: str | None = None,
              in_place: bool = False) -> MutationResult:
    """Deliver the webhook carrying `event` again, byte-identical, `times` more times,
    `gap_s` apart after the original."""
    return _apply(store, name, out, in_place, "duplicate",
                  {"event": _ref(event), "times": times, "gap_s": gap_s},
                  lambda tape: plan_duplicate(tape, event, times, gap_s))


def drop(store: CassetteStore, name: str, event: EventRef, *, out: str | None = None,
         in_place: bool = False) -> MutationResult:
    """Remove the event: its webhook goes when it carried nothing else, else is rewritten."""
    return _apply(store, name, out, in_place, "drop", {"event": _ref(event)},
                  lambda tape: plan_drop(tape, event))


def move(store: CassetteStore, name: str, event: EventRef, *, before: EventRef | None = None,
         after: EventRef | None = None, out: str | None = None,
         in_place: bool = False) -> MutationResult:
    """Deliver the webhook carrying `event` just before (or after) the one carrying another."""
    return _apply(store, name, out, in_place, "move",
                  {"event": _ref(event), "before": before if before is None else _ref(before),
                   "after": after if after is None else _ref(after)},
                  lambda tape: plan_move(tape, event, before=before, after=after))


def delay(store: CassetteStore, name: str, event: EventRef, seconds: float, *,
          out: str | None = None, in_place: bool = False) -> MutationResult:
    """Deliver the webhook carrying `event` `seconds` later (order follows the new times)."""
    return _apply(store, name, out, in_place, "delay", {"event": _ref(event), "seconds": seconds},
                  lambda tape: plan_delay(tape, event, seconds))


def set_field(store: CassetteStore, name: str, event: EventRef, path: str, value: Any, *,
              out: str | None = None, in_place: bool = False) -> MutationResult:
    """Set a field of an inbound message by dotted path (`text.body`, `location.latitude`)."""
    return _apply(store, name, out, in_place, "set",
                  {"event": _ref(event), "path": path, "value": value},
                  lambda tape: plan_set_field(tape, event, path, value))


def fail_status(store: CassetteStore, name: str, event: EventRef, code: int = DEFAULT_FAIL_CODE,
                *, out: str | None = None, in_place: bool = False) -> MutationResult:
    """Turn a status into `failed` with error `code` (later delivered/read statuses go)."""
    return _apply(store, name, out, in_place, "fail-status", {"event": _ref(event), "code": code},
                  lambda tape: plan_fail_status(tape, event, code))


def break_signature(store: CassetteStore, name: str, event: EventRef, *, out: str | None = None,
                    in_place: bool = False) -> MutationResult:
    """Replay delivers the webhook carrying `event` with a wrong X-Hub-Signature-256."""
    return _apply(store, name, out, in_place, "break-signature", {"event": _ref(event)},
                  lambda tape: plan_signature(tape, event, "bad"))


def remove_signature(store: CassetteStore, name: str, event: EventRef, *, out: str | None = None,
                     in_place: bool = False) -> MutationResult:
    """Replay delivers the webhook carrying `event` without X-Hub-Signature-256."""
    return _apply(store, name, out, in_place, "remove-signature", {"event": _ref(event)},
                  lambda tape: plan_signature(tape, event, "none"))


def shift_timestamps(store: CassetteStore, name: str, seconds: float, *, out: str | None = None,
                     in_place: bool = False) -> MutationResult:
    """Move every message and status `timestamp` in the webhooks by `seconds` (whole)."""
    if not float(seconds).is_integer():
        raise MutationError(f"timestamps are whole seconds; cannot shift by {seconds}")
    whole = int(seconds)
    return _apply(store, name, out, in_place, "shift-timestamps", {"seconds": whole},
                  lambda tape: plan_shift_timestamps(tape, whole))


def pseudonymize(store: CassetteStore, name: str, seed: str | int | None = None, *,
                 out: str | None = None, in_place: bool = False) -> MutationResult:
    """Swap users' numbers, names and wamids for consistent fakes in every webhook and
    Graph body (addons.redact.Pseudonymizer); the business's numbers stay."""
    return _apply(store, name, out, in_place, "pseudonymize", {"seed": seed},
                  lambda tape: plan_pseudonymize(tape, seed))


def _known_media(store: CassetteStore, tape: Tape) -> list[str]:
    linked = [link.media_id for link in store.list_media(tape.name)]
    return list(dict.fromkeys([*linked, *(e.media_id for e in tape.events if e.media_id)]))


def _media_error(tape: Tape, media_id: str, known: Sequence[str]) -> MutationError:
    hint = closest(media_id, known, "media ids")
    return MutationError(f"cassette {tape.name!r} has no media with id {media_id!r}{hint}")


def _mime_of(path: Path, given: str | None) -> str | None:
    if given:
        return given
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MutationError(f"cannot read {path}: {e.strerror or e}") from e


def swap_media(store: CassetteStore, name: str, media_id: str, file: Path,
               mime_type: str | None = None, *, out: str | None = None,
               in_place: bool = False) -> MutationResult:
    """Serve `file` for `media_id`: the blob is stored and linked, and mime type, sha256
    (base64 in webhooks, hex in Graph answers) and size follow wherever the id appears."""
    file = Path(file)
    data = _read_file(file)

    def plan(tape: Tape) -> Change:
        known = _known_media(store, tape)
        if media_id not in known:
            raise _media_error(tape, media_id, known)
        mime = _mime_of(file, mime_type)
        if mime is None:
            try:
                mime = store.media(tape.name, media_id).mime_type
            except StoreError:
                raise MutationError(f"cannot tell the MIME type of {file.name}; give mime_type")
        return plan_swap_media(tape, media_id, data, mime)

    return _apply(store, name, out, in_place, "swap-media",
                  {"media_id": media_id, "file": str(file), "mime_type": mime_type}, plan)


def add_event(
    store: CassetteStore,
    name: str,
    kind: str,
    /,
    *,
    sender: str | None = None,
    at: float | None = None,
    after: EventRef | None = None,
    file: Path | None = None,
    media_id: str | None = None,
    mime_type: str | None = None,
    out: str | None = None,
    in_place: bool = False,
    **fields: Any,
) -> MutationResult:
    """Add a new inbound message from `sender` (default: the cassette's first sender).

    kind: text (body), image/audio/video/document/sticker (file, or an existing media_id;
    caption, filename, voice), location (latitude, longitude, name, address), button_reply
    / list_reply (reply_id, title, description; reply_to), reaction (message_id, emoji).
    It gets a fresh wamid and arrives `at` seconds after the cassette's start, right after
    the delivery of event `after`, or a second after the last exchange.
    """
    data: bytes | None = None
    if kind in MEDIA_KINDS:
        if (file is None) == (media_id is None):
            raise MutationError(f"a {kind} message needs a file or an existing media id (one)")
        if file is not None:
            file = Path(file)
            data = _read_file(file)
            if kind == "document" and fields.get("filename") is None:
                fields["filename"] = file.name
    elif file is not None or media_id is not None:
        raise MutationError(f"a {kind} message carries no media; file and media_id are for "
                            f"{', '.join(MEDIA_KINDS)}")

    def plan(tape: Tape) -> Change:
        media: list[tuple[str, bytes, str]] = []
        if kind in MEDIA_KINDS:
            if data is not None and file is not None:
                mime = _mime_of(file, mime_type)
                if mime is None:
                    raise MutationError(f"cannot tell the MIME type of {file.name}; "
                                        "give mime_type")
                mid = new_media_id()
                media.append((mid, data, mime))
                sha_b64 = webhooks.sha256_b64(data)
            else:
                assert media_id is not None
                known = _known_media(store, tape)
                if media_id not in known:
                    raise _media_error(tape, media_id, known)
                link = store.media(tape.name, media_id)
                mid, mime = media_id, mime_type or link.mime_type
                sha_b64 = _hex_to_b64(link.sha256)
            fields.update(media_id=mid, mime_type=mime, sha256=sha_b64)
        change = plan_add(tape, kind, sender=sender, at=at, after=after, **fields)
        change.media = media
        if media:
            change.details["media_id"] = media[0][0]
        return change

    arguments = {"kind": kind, "sender": sender, "at": at,
                 "after": after if after is None else _ref(after),
                 "file": str(file) if file is not None else None, "media_id": media_id,
                 "mime_type": mime_type, **fields}
    return _apply(store, name, out, in_place, "add", arguments, plan)


def _hex_to_b64(sha_hex: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(sha_hex)).decode()
