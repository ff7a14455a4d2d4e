"""Mutation plans: pure functions from a `Tape` to a `Change`, before anything is written.

A plan works out the new exchange list, the media to store and a one-line summary, and
raises `MutationError` on anything that does not make sense. Plans read no store: what
they need to know of a cassette's media comes in as a `CassetteMedia` (linked ids and a
look-up), and files come in already read, as a `MediaFile`. The payload edits themselves
are WhatsApp knowledge and live in `contract.fields` and `contract.surgery`.

Operations that edit content (`drop`, `set_field`, `fail_status`) apply to every identical
copy of the event a wamid names, so Meta-style duplicates stay byte-identical; the ones
that act on a delivery (`duplicate`, `move`, `delay`, the signature ones) take the first.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
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
from typing import ParamSpec

from pseudowa.addons.redact import Pseudonymizer
from pseudowa.proxy.cassette.check import recorded_send_wamids
from pseudowa.proxy.cassette.tape import MUTATION_ANNOTATION
from pseudowa.proxy.cassette.tape import SIGNING_ANNOTATION
from pseudowa.proxy.cassette.tape import EventRef
from pseudowa.proxy.cassette.tape import Payload
from pseudowa.proxy.cassette.tape import Tape
from pseudowa.proxy.cassette.tape import Target
from pseudowa.proxy.cassette.tape import closest
from pseudowa.proxy.cassette.tape import is_webhook_post
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.fields import ADD_KINDS
from pseudowa.proxy.contract.fields import MEDIA_KINDS
from pseudowa.proxy.contract.fields import PayloadError
from pseudowa.proxy.contract.fields import build_message
from pseudowa.proxy.contract.fields import coerce_value
from pseudowa.proxy.contract.fields import field_value
from pseudowa.proxy.contract.fields import set_message_field
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.ids import sha256_hex_to_b64
from pseudowa.proxy.contract.surgery import DEFAULT_FAIL_CODE
from pseudowa.proxy.contract.surgery import failed_status
from pseudowa.proxy.contract.surgery import is_download_of
from pseudowa.proxy.contract.surgery import remove_events
from pseudowa.proxy.contract.surgery import shift_payload_timestamps
from pseudowa.proxy.contract.surgery import slots
from pseudowa.proxy.contract.surgery import swap_media_answer
from pseudowa.proxy.contract.surgery import swap_media_fields
from pseudowa.proxy.errors import MutationError
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import MediaLinkInfo

P = ParamSpec("P")
Edit = Callable[[Payload], Payload]

ADD_GAP_S = 1.0  # an added message without a time comes this long after the last exchange
_WAMID_RE = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")


@dataclass
class Change:
    """What a mutation does: the new exchanges (None: unchanged), media to store, a summary."""

    summary: str
    exchanges: list[Exchange] | None = None
    media: list[tuple[str, bytes, str]] = field(default_factory=list)  # (media id, bytes, mime)
    details: dict[str, Any] = field(default_factory=dict)


def _not_linked(media_id: str) -> MediaLinkInfo | None:
    return None


@dataclass(frozen=True)
class CassetteMedia:
    """What a plan may know of a cassette's stored media, without a store."""

    linked: Sequence[str] = ()  # the media ids the cassette links to blobs
    lookup: Callable[[str], MediaLinkInfo | None] = _not_linked  # a linked id's blob, or None

    def known(self, tape: Tape) -> list[str]:
        """Every media id the cassette knows: linked ones, then those its webhooks name."""
        named = (e.media_id for e in tape.events if e.media_id)
        return list(dict.fromkeys([*self.linked, *named]))

    def check(self, tape: Tape, media_id: str) -> None:
        """MutationError naming the closest ids unless the cassette knows `media_id`."""
        known = self.known(tape)
        if media_id not in known:
            hint = closest(media_id, known, "media ids")
            raise MutationError(f"cassette {tape.name!r} has no media with id {media_id!r}{hint}")


@dataclass(frozen=True)
class MediaFile:
    """A file read for a mutation: where it came from (its name tells the type) and bytes."""

    path: Path
    data: bytes

    def mime_type(self, given: str | None) -> str | None:
        """`given`, else the type the file name suggests (None when it suggests none)."""
        if given:
            return given
        guessed, _ = mimetypes.guess_type(self.path.name)
        return guessed


def _mutation_errors(plan: Callable[P, Change]) -> Callable[P, Change]:
    """A plan whose payload mistakes (the contract's PayloadError) are MutationErrors."""

    @functools.wraps(plan)
    def checked(*args: P.args, **kwargs: P.kwargs) -> Change:
        try:
            return plan(*args, **kwargs)
        except PayloadError as e:
            raise MutationError(str(e)) from e

    return checked


# -- exchange edits ------------------------------------------------------------------------


def by_time(exchanges: Iterable[Exchange]) -> list[Exchange]:
    """Stable sort by start time: replay delivers webhooks in this order at speed 0."""
    return sorted(exchanges, key=lambda x: x.started_at)


def shifted(x: Exchange, seconds: float) -> Exchange:
    """`x` started and finished `seconds` later."""
    return dataclasses.replace(
        x, started_at=x.started_at + seconds, finished_at=x.finished_at + seconds
    )


def with_body(x: Exchange, body: bytes) -> Exchange:
    """`x` carrying a new request body: lengths fixed, the stale recorded signature gone."""
    if body == x.request_body:
        return x
    stale = {signature.HEADER.lower(), signature.LEGACY_HEADER.lower()}
    headers = [
        (k, str(len(body)) if k.lower() == "content-length" else v)
        for k, v in x.request_headers
        if k.lower() not in stale
    ]
    return dataclasses.replace(x, request_body=body, request_headers=headers)


def with_response(x: Exchange, body: bytes) -> Exchange:
    """`x` answered with a new response body (its length fixed)."""
    headers = [
        (k, str(len(body)) if k.lower() == "content-length" else v) for k, v in x.response_headers
    ]
    return dataclasses.replace(x, response_body=body, response_headers=headers)


def annotate(x: Exchange, **notes: str) -> Exchange:
    """`x` with `notes` added to its annotations."""
    return dataclasses.replace(x, annotations={**x.annotations, **notes})


def edit_events(
    tape: Tape,
    edits: dict[int, list[tuple[int, Edit]]],
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


# -- plans ---------------------------------------------------------------------------------


def plan_duplicate(tape: Tape, event: EventRef, times: int = 1, gap_s: float = 0.0) -> Change:
    """The webhook carrying `event` delivered `times` more times, `gap_s` apart."""
    if times < 1:
        raise MutationError(f"times must be at least 1, not {times}")
    if gap_s < 0 or not math.isfinite(gap_s):
        raise MutationError(f"gap must be a number of seconds >= 0, not {gap_s}")
    t = tape.resolve(event)
    out: list[Exchange] = []
    for i, x in enumerate(tape.exchanges):
        out.append(x)
        if i == t.exchange:  # same bytes; only the time (and a note) differ
            out.extend(
                annotate(shifted(x, k * gap_s), **{MUTATION_ANNOTATION: "duplicate"})
                for k in range(1, times + 1)
            )
    plural = "time" if times == 1 else "times"
    gap = f", {gap_s:g} s apart" if gap_s else ""
    return Change(
        f"duplicated the webhook carrying {t}: delivered {times} more {plural}{gap}",
        by_time(out),
        details={"wamid": t.event.wamid},
    )


def plan_drop(tape: Tape, event: EventRef) -> Change:
    """`event` (every copy, for a wamid) removed; emptied webhooks go."""
    targets = tape.targets(event)
    removals: dict[int, list[int]] = {}
    for t in targets:
        removals.setdefault(t.exchange, []).append(t.event.position)
    out = edit_events(tape, {}, removals)
    gone = len(tape.exchanges) - len(out)
    copies = f" ({len(targets)} copies)" if len(targets) > 1 else ""
    if gone:
        webhooks_note = f"; {gone} webhook{'s' if gone != 1 else ''} removed"
    else:
        webhooks_note = "; its webhook rewritten without it"
    return Change(
        f"dropped {targets[0]}{copies}{webhooks_note}",
        out,
        details={"wamid": targets[0].event.wamid},
    )


def plan_move(
    tape: Tape, event: EventRef, *, before: EventRef | None = None, after: EventRef | None = None
) -> Change:
    """The webhook carrying `event` delivered just before (or after) another one."""
    if (before is None) == (after is None):
        raise MutationError("move needs exactly one of before or after")
    t = tape.resolve(event)
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
    return Change(f"moved {t} {where} {anchor}", by_time(rest), details={"wamid": t.event.wamid})


def plan_delay(tape: Tape, event: EventRef, seconds: float) -> Change:
    """The webhook carrying `event` delivered `seconds` later."""
    if not math.isfinite(seconds):
        raise MutationError(f"delay must be a number of seconds, not {seconds}")
    t = tape.resolve(event)
    out = [shifted(x, seconds) if i == t.exchange else x for i, x in enumerate(tape.exchanges)]
    return Change(
        f"delayed the webhook carrying {t} by {seconds:g} s",
        by_time(out),
        details={"wamid": t.event.wamid},
    )


@_mutation_errors
def plan_set_field(tape: Tape, event: EventRef, path: str, value: Any) -> Change:
    """Field `path` of message `event` (every copy, for a wamid) set to `value`."""
    targets = tape.targets(event, prefer=("message",))
    first = targets[0]
    if first.event.category != "message":
        raise MutationError(
            f"{first} is a {first.event.category}, not a message; set edits "
            "fields of inbound messages"
        )
    message = slots(tape.payload(first.exchange))[first.event.position].item
    new = set_message_field(message, path, value)  # validates before anything else
    edits: dict[int, list[tuple[int, Edit]]] = {}
    for t in targets:
        edits.setdefault(t.exchange, []).append(
            (t.event.position, lambda item: set_message_field(item, path, value))
        )
    copies = f" ({len(targets)} copies)" if len(targets) > 1 else ""
    shown = json.dumps(field_value(new, path), ensure_ascii=False)
    return Change(
        f"set {path} = {shown} in {first}{copies}",
        edit_events(tape, edits),
        details={"wamid": first.event.wamid},
    )


def plan_fail_status(tape: Tape, event: EventRef, code: int = DEFAULT_FAIL_CODE) -> Change:
    """Status `event` turned into `failed` with `code`; later delivered/read statuses go."""
    targets = tape.targets(event, prefer=("status",))
    first = targets[0]
    if first.event.category != "status":
        raise MutationError(
            f"{first} is a {first.event.category}, not a status; fail-status "
            "takes a status event (its index, or the wamid of a send)"
        )
    edits: dict[int, list[tuple[int, Edit]]] = {}
    for t in targets:
        edits.setdefault(t.exchange, []).append(
            (t.event.position, lambda item: failed_status(item, code))
        )
    # A failed message is never delivered or read: later such statuses go.
    removals: dict[int, list[int]] = {}
    later = [
        tape.target(i)
        for i, e in enumerate(tape.events)
        if i > first.index
        and e.wamid == first.event.wamid
        and e.category == "status"
        and e.type in ("delivered", "read", "played")
    ]
    for t in later:
        removals.setdefault(t.exchange, []).append(t.event.position)
    title = GraphError(code).title
    removed = ""
    if later:
        removed = f"; {len(later)} later delivered/read status{'es' if len(later) != 1 else ''} "
        removed += "removed"
    return Change(
        f"failed {first} with #{code} {title}{removed}",
        edit_events(tape, edits, removals),
        details={"wamid": first.event.wamid},
    )


def plan_signature(tape: Tape, event: EventRef, mode: Literal["bad", "none"]) -> Change:
    """The webhook carrying `event` marked for replay with a wrong (or no) signature."""
    t = tape.resolve(event)
    out = [
        annotate(x, **{SIGNING_ANNOTATION: mode}) if i == t.exchange else x
        for i, x in enumerate(tape.exchanges)
    ]
    what = "a wrong signature" if mode == "bad" else "no signature"
    return Change(
        f"the webhook carrying {t} will be delivered with {what}",
        out,
        details={"wamid": t.event.wamid},
    )


@_mutation_errors
def plan_shift_timestamps(tape: Tape, seconds: int) -> Change:
    """Every message and status timestamp in the webhooks moved by `seconds`."""
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
    return Change(
        f"shifted {changed} message/status timestamps by {seconds:+d} s",
        out,
        details={"timestamps": changed},
    )


def plan_swap_media(tape: Tape, media_id: str, data: bytes, mime_type: str) -> Change:
    """`data` served for `media_id`: webhooks, Graph answers and downloads follow."""
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
                new = with_response(x, body)
                counts["graph"] += 1
        elif str(x.kind) == Kind.MEDIA.value and downloads(x, media_id):
            new = swap_download(x, data, mime_type, sha_hex)
            counts["media"] += 1
        out.append(new)
    where = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no exchange"
    return Change(
        f"media {media_id} now {len(data)} B {mime_type} sha256 {sha_hex[:12]}… ({where} updated)",
        out,
        media=[(media_id, data, mime_type)],
        details={"media_id": media_id, "sha256": sha_hex, "size": len(data)},
    )


def plan_swap_media_file(
    tape: Tape,
    media: CassetteMedia,
    media_id: str,
    file: MediaFile,
    mime_type: str | None = None,
) -> Change:
    """`plan_swap_media` for a file: the id must be known; the type is `mime_type`, else
    the file name's, else the one the id had."""
    media.check(tape, media_id)
    mime = file.mime_type(mime_type)
    if mime is None:
        link = media.lookup(media_id)
        if link is None:
            raise MutationError(f"cannot tell the MIME type of {file.path.name}; give mime_type")
        mime = link.mime_type
    return plan_swap_media(tape, media_id, file.data, mime)


def downloads(x: Exchange, media_id: str) -> bool:
    """True when a media exchange downloads `media_id` (mid in the URL, path, annotation)."""
    return is_download_of(x.url, media_id) or x.annotations.get("media_id") == media_id


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


@_mutation_errors
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
        sender = next((e.sender for e in tape.events if e.category == "message" and e.sender), None)
        if sender is None:
            raise MutationError(
                f"cassette {tape.name!r} has no inbound message to take a sender "
                "from; give the sender's number"
            )
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
    message = build_message(
        kind, sender, wamid=wamid, timestamp=str(int(when)), context=context, **fields
    )
    payload = webhooks.inbound_webhook(account, message, tape.profile_name(sender))
    new = Exchange(
        kind=Kind.WEBHOOK.value,
        method="POST",
        url=tape.webhook_url(),
        request_headers=[("Content-Type", "application/json")],
        request_body=webhooks.dumps(payload),
        response_status=200,
        response_body=b"",
        started_at=when,
        finished_at=when + 0.01,
        annotations={MUTATION_ANNOTATION: "add"},
    )
    out = list(tape.exchanges)
    out.insert(anchor.exchange + 1 if anchor is not None else len(out), new)
    if anchor:
        where = f"after {anchor}"
    elif tape.exchanges:
        where = f"at +{when - tape.start:.3f} s"
    else:
        where = "as the first exchange"
    label = kind.replace("_", " ")
    return Change(
        f"added {label} message {wamid} from {sender} {where}",
        by_time(out),
        details={"wamid": wamid},
    )


def plan_add_event(
    tape: Tape,
    media: CassetteMedia,
    kind: str,
    *,
    file: MediaFile | None = None,
    media_id: str | None = None,
    mime_type: str | None = None,
    **message: Any,
) -> Change:
    """`plan_add` for a message whose media is a new file (a fresh media id, stored with
    the change) or media the cassette already has (`media_id`)."""
    fields = dict(message)
    new_media: list[tuple[str, bytes, str]] = []
    if kind in MEDIA_KINDS:
        if file is not None:
            mime = file.mime_type(mime_type)
            if mime is None:
                raise MutationError(
                    f"cannot tell the MIME type of {file.path.name}; give mime_type"
                )
            mid = new_media_id()
            new_media.append((mid, file.data, mime))
            sha_b64 = webhooks.sha256_b64(file.data)
        else:
            assert media_id is not None
            media.check(tape, media_id)
            link = media.lookup(media_id)
            if link is None:  # named by a webhook but never linked to bytes
                raise MediaNotFound(tape.name, media_id)
            mid, mime = media_id, mime_type or link.mime_type
            sha_b64 = sha256_hex_to_b64(link.sha256)
        fields.update(media_id=mid, mime_type=mime, sha256=sha_b64)
    change = plan_add(tape, kind, **fields)
    change.media = new_media
    if new_media:
        change.details["media_id"] = new_media[0][0]
    return change


def plan_pseudonymize(tape: Tape, seed: str | int | None = None) -> Change:
    """Users' numbers, names and wamids swapped for consistent fakes in every body."""
    pz = Pseudonymizer(seed)
    pz.keep(tape.display_numbers())
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
            new = with_response(new, response)
        label = x.annotations.get("label")
        if label:
            new = annotate(new, label=_WAMID_RE.sub(lambda m: pz.wamid(m.group(0)), label))
        bodies += (request != x.request_body) + (response != x.response_body)
        out.append(new)
    n = len(pz.phones)
    return Change(
        f"pseudonymized {n} phone number{'s' if n != 1 else ''} "
        f"(with their names and wamids) in {bodies} bodies",
        out,
        details={"numbers": n, "bodies": bodies},
    )
