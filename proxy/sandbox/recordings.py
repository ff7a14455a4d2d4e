"""A cassette's recorded send answers, and which one answers a live send.

The fake Graph API answers a send from the recording when one fits, each recorded answer
used once. An answer fits, in this order: the same request shape (volatile fields and
documented defaults aside); then, by meaning, the recorded send at the same position
among the sends to the same recipient with the same type; then the nearest shape among
the remaining sends to that recipient with that type. Matching by meaning is what lets a
recorded error (a 130429 on the first send) reach a bot whose request differs in a detail
the recording did not foresee; strict mode keeps to the first rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field

from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import is_read_receipt
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.storage.records import Headers
from pseudowa.storage.records import Kind
from pseudowa.storage.store import CassetteStore


@dataclass(frozen=True)
class RecordedAnswer:
    """A recorded response to a send, replayed verbatim once, and what the send meant."""

    status: int
    headers: Headers
    body: bytes
    seq: int  # the interaction's position in its cassette
    shape: RequestShape | None = None
    recipient: str | None = None  # wa_id of the recorded send (None: it did not parse)
    type: str | None = None
    position: int = 0  # among the recorded sends to `recipient` of `type`

    @property
    def error(self) -> tuple[int | None, str]:
        """Meta's error code and message of a recorded error answer (None, "" otherwise)."""
        answer = matching.parse_json(self.body)
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            return None, ""
        code, message = error.get("code"), error.get("message")
        return (
            code if isinstance(code, int) else None,
            message if isinstance(message, str) else "",
        )

    def describe(self) -> str:
        """The recorded send in a few words: `text to 16505551234 (#12)`."""
        what = f"{self.type} to {self.recipient}" if self.type else "a send"
        return f"{what} (#{self.seq})"


@dataclass
class Recordings:
    """A cassette's recorded send answers in order, its numbers, and which were used."""

    answers: list[RecordedAnswer] = field(default_factory=list)
    phone_ids: set[str] = field(default_factory=set)
    used: set[int] = field(default_factory=set)  # seqs of the answers replayed
    # Live sends so far per (recipient, type): the position of the next one.
    _live: Counter[tuple[str, str]] = field(default_factory=Counter)
    _by_key: dict[str, list[RecordedAnswer]] | None = None

    @property
    def shapes(self) -> list[RequestShape]:
        """The distinct recorded request shapes (for the nearest ones in an error)."""
        seen: dict[str, RequestShape] = {}
        for a in self.answers:
            if a.shape is not None:
                seen.setdefault(a.shape.key(), a.shape)
        return list(seen.values())

    def take(
        self, shape: RequestShape, send: SendRequest, *, by_meaning: bool = True
    ) -> tuple[RecordedAnswer, str] | None:
        """The recorded answer for this live send and how it was found ("shape",
        "position" or "nearest"), marked used; None when none is left that fits."""
        where = (send.wa_id, send.type)
        position = self._live[where]
        self._live[where] += 1
        if self._by_key is None:  # built once: the exact match is the common case
            self._by_key = {}
            for a in self.answers:
                if a.shape is not None:
                    self._by_key.setdefault(a.shape.key(), []).append(a)
        same = self._by_key.get(shape.key(), [])
        found = next((a for a in same if a.seq not in self.used), None)
        how = "shape"
        if found is None and by_meaning:
            alike = [
                a for a in self.answers if (a.recipient, a.type) == where and a.seq not in self.used
            ]
            found = next((a for a in alike if a.position == position), None)
            how = "position"
            if found is None and alike:
                found = min(
                    alike,
                    key=lambda a: (
                        len(matching.diff_fields(a.shape.body if a.shape else None, shape.body)),
                        a.seq,
                    ),
                )
                how = "nearest"
        if found is None:
            return None
        self.used.add(found.seq)
        return found, how

    def unreplayed_errors(self) -> list[RecordedAnswer]:
        """Recorded error answers no live send received."""
        return [a for a in self.answers if a.status != 200 and a.seq not in self.used]


def read_recordings(store: CassetteStore, name: str, volatile: tuple[str, ...]) -> Recordings:
    """The recorded send answers and phone number ids of cassette `name` (blocking)."""
    found = Recordings(phone_ids=set(store.get_cassette(name).phone_number_ids))
    positions: Counter[tuple[str, str]] = Counter()
    for ex in store.interactions(name, kinds=[Kind.GRAPH.value]):
        path = matching.normalize_path(ex.url)
        # Only sends are answered from recordings: media look-ups and downloads
        # are served from the cassette's media links.
        if ex.method.upper() != "POST" or not path.endswith("/messages"):
            continue
        if ex.response_status is None or is_read_receipt(matching.parse_json(ex.request_body)):
            continue
        segments = path.strip("/").split("/")
        if len(segments) == 2:  # /{phone_number_id}/messages
            found.phone_ids.add(segments[0])
        recipient = kind = None
        position = 0
        try:
            request = parse_send(ex.request_body)
        except GraphError:
            request = None  # a recorded invalid request: matched by its exact shape only
        if isinstance(request, SendRequest):
            recipient, kind = request.wa_id, request.type
            position = positions[(recipient, kind)]
            positions[(recipient, kind)] += 1
        found.answers.append(
            RecordedAnswer(
                ex.response_status,
                list(ex.response_headers),
                ex.response_body,
                ex.seq,
                RequestShape.of(ex.method, ex.url, ex.request_body, volatile),
                recipient,
                kind,
                position,
            )
        )
    return found
