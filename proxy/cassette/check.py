"""The replay check: did the bot behave now as it did when the cassette was recorded?

Pure functions over two lists of exchanges (the cassette's and the run's journal),
which have the same form, so the same attribution works on both sides.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.matching import DEFAULT_VOLATILE
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.matching import diff_fields
from pseudowa.proxy.contract.matching import parse_json
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.storage.records import Exchange


@dataclass(frozen=True)
class Send:
    """One message the bot sent (read receipts are not sends)."""

    shape: RequestShape
    request: SendRequest
    started_at: float
    status: int | None

    @property
    def refers_to(self) -> str | None:
        """The inbound wamid this send answers, when the bot said so."""
        if self.request.reply_to:
            return self.request.reply_to
        if self.request.type == "reaction":
            target = self.request.body.get("reaction", {}).get("message_id")
            return target if isinstance(target, str) else None
        return None


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of a webhook to the bot, with the inbound message wamids it carried."""

    started_at: float
    finished_at: float
    status: int | None
    error: str | None
    wamids: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class RefusedSend:
    """A send the bot made that the Graph API answered with an error."""

    summary: str  # "text to 16505551234", or "invalid send" when it did not parse
    status: int | None
    code: int | None
    message: str

    def describe(self) -> str:
        """One line: what was sent and the error it got."""
        code = f" (#{self.code})" if self.code is not None else ""
        if code and self.message.startswith(code.strip()):
            code = ""  # Meta's messages often start with "(#130429)" already
        return f"{self.summary} refused: HTTP {self.status}{code} {self.message}".rstrip()


def is_send_path(url: str) -> bool:
    """True for a Graph send endpoint (`/{phone_number_id}/messages`, or the seed's `/messages`)."""
    return url.split("?", 1)[0].rstrip("/").endswith("/messages")


def recorded_send_wamids(exchanges: Iterable[Exchange]) -> dict[str, float]:
    """wamid -> recorded time of the send whose answer returned it."""
    found: dict[str, float] = {}
    for x in exchanges:
        if x.kind != "graph" or x.method.upper() != "POST" or not is_send_path(x.url):
            continue
        answer = parse_json(x.response_body)
        if x.response_status == 200 and isinstance(answer, dict):
            for msg in answer.get("messages") or []:
                if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                    found[msg["id"]] = x.started_at
    return found


def sends(exchanges: Iterable[Exchange], volatile: Sequence[str] = DEFAULT_VOLATILE) -> list[Send]:
    """The bot's message sends among `exchanges`, in order (valid requests only)."""
    found = []
    for x in exchanges:
        if x.kind != "graph" or x.method.upper() != "POST":
            continue
        if not is_send_path(x.url):
            continue
        try:
            request = parse_send(x.request_body)
        except GraphError:
            continue
        if isinstance(request, SendRequest):
            # The seed route POST /messages and /{phone_id}/messages are the same send.
            shape = replace(
                RequestShape.of(x.method, x.url, x.request_body, volatile), path="/messages"
            )
            found.append(Send(shape, request, x.started_at, x.response_status))
    return found


def refused_sends(exchanges: Iterable[Exchange]) -> list[RefusedSend]:
    """The bot's sends (read receipts included: a refused one is a bug too) answered with an
    error, in order, each with Meta's error code and message."""
    found = []
    for x in exchanges:
        if x.kind != "graph" or x.method.upper() != "POST" or not is_send_path(x.url):
            continue
        if x.response_status is None or x.response_status == 200:
            continue
        try:
            request = parse_send(x.request_body)
            summary = (
                f"{request.type} to {request.to}"
                if isinstance(request, SendRequest)
                else "read receipt"
            )
        except GraphError:
            summary = "invalid send"
        answer = parse_json(x.response_body)
        error = answer.get("error") if isinstance(answer, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        message = error.get("message")
        found.append(
            RefusedSend(
                summary,
                x.response_status,
                code if isinstance(code, int) else None,
                message if isinstance(message, str) else "",
            )
        )
    return found


def deliveries(exchanges: Iterable[Exchange]) -> list[WebhookDelivery]:
    """Webhook POSTs among `exchanges` with the inbound message wamids each carried."""
    found = []
    for x in exchanges:
        if x.kind != "webhook" or x.method.upper() != "POST":
            continue
        payload = webhooks.parse(x.request_body)
        events = webhooks.events(payload) if payload else []
        wamids = tuple(e.wamid for e in events if e.category == "message" and e.wamid)
        label = x.annotations.get("label", "") if x.annotations else ""
        if not label:
            label = ", ".join(f"{e.category} {e.type} {e.wamid or ''}".strip() for e in events)
        found.append(
            WebhookDelivery(x.started_at, x.finished_at, x.response_status, x.error, wamids, label)
        )
    return found


def replies_per_wamid(
    sends_: Sequence[Send], deliveries_: Sequence[WebhookDelivery]
) -> Counter[str]:
    """How many sends answer each inbound wamid.

    A send counts for the wamid it names (context.message_id, reaction target);
    otherwise for the message whose delivery was in flight when it was made, which
    is how a bot that processes before answering 200 replies.
    """
    counts: Counter[str] = Counter()
    for send in sends_:
        target = send.refers_to
        if target is None:
            for d in deliveries_:
                if d.started_at <= send.started_at <= d.finished_at and len(d.wamids) == 1:
                    target = d.wamids[0]
                    break
        if target is not None:
            counts[target] += 1
    return counts


@dataclass
class CheckResult:
    """What differs between the recording and the run."""

    recorded_sends: int = 0
    run_sends: int = 0
    missing: list[Send] = field(default_factory=list)  # recorded, not sent now
    extra: list[Send] = field(default_factory=list)  # sent now, not recorded
    reordered: bool = False
    dedupe_failures: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # wamid: (copies, replies)
    not_ok: list[WebhookDelivery] = field(default_factory=list)  # non-200 answers
    undelivered: list[str] = field(default_factory=list)  # labels of webhooks never answered 200
    refused: list[RefusedSend] = field(default_factory=list)  # the bot's sends answered an error
    # A webhook answered non-200 and then 200 on Meta's retry passes when this is set.
    tolerate_retries: bool = False

    @property
    def ok(self) -> bool:
        """Same sends, dedupe held, every webhook delivered, and answered 200 at once
        (unless retries are tolerated)."""
        if self.not_ok and not self.tolerate_retries:
            return False
        return not (self.missing or self.extra or self.dedupe_failures or self.undelivered)

    def diff_lines(self) -> list[str]:
        """A readable diff: each missing send against its nearest extra one, field by field."""
        lines: list[str] = []
        extras = list(self.extra)
        for miss in self.missing:
            best = _closest(miss, extras)
            if best is None:
                lines.append(f"- recorded send not made now: {_summary(miss)}")
                lines.extend(_json_diff(miss.shape.body, None))
                continue
            extras.remove(best)
            fields = diff_fields(miss.shape.body, best.shape.body)
            lines.append(
                f"~ send to {best.request.to} ({best.request.type}) differs in: {', '.join(fields)}"
            )
            lines.extend(_json_diff(miss.shape.body, best.shape.body))
        for extra in extras:
            lines.append(f"+ send not in the recording: {_summary(extra)}")
            lines.extend(_json_diff(None, extra.shape.body))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "recorded_sends": self.recorded_sends,
            "run_sends": self.run_sends,
            "missing": [s.shape.body for s in self.missing],
            "extra": [s.shape.body for s in self.extra],
            "reordered": self.reordered,
            "dedupe_failures": {
                w: {"copies": c, "replies": r} for w, (c, r) in self.dedupe_failures.items()
            },
            "non_200": [
                {"webhook": d.label, "status": d.status, "error": d.error} for d in self.not_ok
            ],
            "undelivered": self.undelivered,
            "tolerate_retries": self.tolerate_retries,
            "refused": [
                {"send": r.summary, "status": r.status, "code": r.code, "message": r.message}
                for r in self.refused
            ],
        }


def _summary(send: Send) -> str:
    return f"{send.request.type} to {send.request.to}"


def _closest(send: Send, candidates: Sequence[Send]) -> Send | None:
    same_kind = [c for c in candidates if c.request.type == send.request.type]
    if not same_kind:
        return None
    return min(same_kind, key=lambda c: len(diff_fields(send.shape.body, c.shape.body)))


# Characters str.splitlines() breaks at that json.dumps(ensure_ascii=False) leaves raw:
# a body holding one would lose the diff's marker on the line after it.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _json_diff(a: Any, b: Any) -> list[str]:
    def lines(v: Any) -> list[str]:
        if v is None:
            return []
        text = json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False)
        return text.translate(_LINE_BREAKS).split("\n")

    return [
        "    " + line
        for line in difflib.unified_diff(lines(a), lines(b), "recorded", "now", n=2, lineterm="")
    ]


def compare(
    recorded: Sequence[Exchange],
    run: Sequence[Exchange],
    volatile: Sequence[str] = DEFAULT_VOLATILE,
    *,
    tolerate_retries: bool = False,
) -> CheckResult:
    """Compare the bot's sends (as a multiset: delivery order may be perturbed on purpose),
    its dedupe behaviour, and its webhook answers."""
    rec_sends, run_sends = sends(recorded, volatile), sends(run, volatile)
    result = CheckResult(
        recorded_sends=len(rec_sends),
        run_sends=len(run_sends),
        refused=refused_sends(run),
        tolerate_retries=tolerate_retries,
    )
    remaining = Counter(s.shape.key() for s in rec_sends)
    for s in run_sends:
        if remaining[s.shape.key()] > 0:
            remaining[s.shape.key()] -= 1
        else:
            result.extra.append(s)
    taken: Counter[str] = Counter()
    run_keys = Counter(s.shape.key() for s in run_sends)
    for s in rec_sends:
        if taken[s.shape.key()] < run_keys[s.shape.key()]:
            taken[s.shape.key()] += 1
        else:
            result.missing.append(s)
    if not (result.missing or result.extra):
        result.reordered = [s.shape.key() for s in rec_sends] != [s.shape.key() for s in run_sends]

    run_deliveries = deliveries(run)
    rec_replies = replies_per_wamid(rec_sends, deliveries(recorded))
    run_replies = replies_per_wamid(run_sends, run_deliveries)
    copies: Counter[str] = Counter()
    for d in run_deliveries:
        copies.update(set(d.wamids))
    for wamid, n in copies.items():
        if n > 1 and run_replies[wamid] > max(rec_replies[wamid], 1):
            result.dedupe_failures[wamid] = (n, run_replies[wamid])

    result.not_ok = [d for d in run_deliveries if d.status != 200]
    return result


def _is_send_exchange(x: Exchange) -> bool:
    """A message send (not a read receipt), valid or not, as the recording keeps it."""
    if x.kind != "graph" or x.method.upper() != "POST" or not is_send_path(x.url):
        return False
    try:
        return isinstance(parse_send(x.request_body), SendRequest)
    except GraphError:
        return True  # an invalid send is still something the bot sent


def accept_run_sends(recorded: Sequence[Exchange], run: Sequence[Exchange]) -> list[Exchange]:
    """The recording with its sends replaced by the run's (snapshot update), in time order.

    Webhooks, media and everything else stay as recorded. Each run send is placed at its
    distance from the webhook it followed in the run, measured from that webhook's recorded
    time, so the timing attribution of replies (and dedupe checks) holds on the new recording.
    """
    kept = [x for x in recorded if not _is_send_exchange(x)]
    recorded_at: dict[bytes, list[float]] = {}
    for x in recorded:
        if x.kind == "webhook" and x.method.upper() == "POST":
            recorded_at.setdefault(x.request_body, []).append(x.started_at)
    end = max((x.finished_at for x in recorded), default=0.0)
    placed: list[Exchange] = []
    anchor: tuple[float, float] | None = None  # (run time, recorded time) of the last webhook
    for x in sorted(run, key=lambda x: x.started_at):
        if x.kind == "webhook" and x.method.upper() == "POST":
            times = recorded_at.get(x.request_body)
            if times:
                anchor = (x.started_at, times[0])
            continue
        if not _is_send_exchange(x):
            continue
        if anchor is None:
            at = end + 0.001 * (len(placed) + 1)
        else:
            at = anchor[1] + max(0.0, x.started_at - anchor[0])
        span = max(0.0, x.finished_at - x.started_at)
        placed.append(replace(x, started_at=at, finished_at=at + span))
    return sorted([*kept, *placed], key=lambda x: x.started_at)
