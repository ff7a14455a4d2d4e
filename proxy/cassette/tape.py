"""The tape: a cassette in memory as mutations see it, with its events addressed.

A `Tape` holds a cassette's exchanges in order and the events indexed from its webhook
bodies (`index_exchange`, the one indexer the store's callers use: export import, seeds
and mutations). Events are addressed as `store.events(name)` lists them, the numbering
`pseudowa cassette show` prints: by index (`3`, `"3"`, `"#3"`, 0-based, in delivery
order; not the seq of the exchange that delivered it) or by wamid. An index names one delivery of
one event; a wamid names its first event (a message before a status when both carry it).

The annotation names that mutations leave on exchanges live here too, so the replay
side reads them from the cassette room rather than the other way round.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.contract.webhooks import WebhookEvent
from pseudowa.proxy.errors import MutationError
from pseudowa.storage.records import Event
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind

Payload = dict[str, Any]
EventRef = int | str

# An exchange annotation set by `pseudowa cassette mutate break-signature|remove-signature`:
# this one delivery goes out with a wrong signature ("bad") or none ("none"), whatever
# the run's signing option. (The recorder's own "signature" annotation only reports what
# was recorded.)
SIGNING_ANNOTATION = "replay_signature"
# Which mutation made an exchange that was not recorded ("duplicate", "add").
MUTATION_ANNOTATION = "mutation"

DEFAULT_PROFILE_NAME = "Test User"
# Where webhooks go in a cassette that names no bot yet; replay sends them to --bot.
PLACEHOLDER_BOT_URL = "http://bot.invalid/webhook"


def is_webhook_post(x: Exchange) -> bool:
    """True for a webhook delivery: the exchanges whose bodies carry events."""
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
        """The event at `index` of the event list, with where its delivery is."""
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
            self.target(i)
            for i, other in enumerate(self.events)
            if (other.wamid, other.category, other.type) == (e.wamid, e.category, e.type)
        ]

    def payload(self, position: int) -> Payload:
        """The parsed webhook body of the exchange at `position`."""
        payload = webhooks.parse(self.exchanges[position].request_body)
        if payload is None:  # indexed events come from parsed bodies, so this is a bug
            raise MutationError(f"exchange #{position} of {self.name!r} is not a webhook body")
        return payload

    def webhook_payloads(self) -> Iterable[Payload]:
        """The parsed bodies of the webhook deliveries, in order."""
        for x in self.exchanges:
            payload = webhooks.parse(x.request_body) if is_webhook_post(x) else None
            if payload:
                yield payload

    @property
    def start(self) -> float:
        return min((x.started_at for x in self.exchanges), default=time.time())

    @property
    def end(self) -> float:
        return max((max(x.started_at, x.finished_at) for x in self.exchanges), default=time.time())

    def account(self) -> BusinessAccount:
        """The business side as the cassette's webhooks name it (else the defaults)."""
        default = BusinessAccount()
        for payload in self.webhook_payloads():
            for entry in webhooks._dicts(payload.get("entry")):
                for change in webhooks._dicts(entry.get("changes")):
                    value = change.get("value")
                    meta = value.get("metadata") if isinstance(value, dict) else None
                    if isinstance(meta, dict) and isinstance(entry.get("id"), str):
                        return BusinessAccount(
                            waba_id=entry["id"],
                            phone_number_id=str(
                                meta.get("phone_number_id") or default.phone_number_id
                            ),
                            display_phone_number=str(
                                meta.get("display_phone_number") or default.display_phone_number
                            ),
                        )
        return default

    def profile_name(self, wa_id: str) -> str:
        """The profile name the cassette's webhooks give `wa_id` (else a default)."""
        for payload in self.webhook_payloads():
            for value in webhooks.changes(payload):
                for c in webhooks._dicts(value.get("contacts")):
                    profile = c.get("profile")
                    if c.get("wa_id") == wa_id and isinstance(profile, dict):
                        name = profile.get("name")
                        if isinstance(name, str):
                            return name
        return DEFAULT_PROFILE_NAME

    def display_numbers(self) -> list[str]:
        """The business's own numbers (`display_phone_number`) the webhooks carry."""
        found: list[str] = []
        for payload in self.webhook_payloads():
            for value in webhooks.changes(payload):
                meta = value.get("metadata")
                if isinstance(meta, dict) and isinstance(meta.get("display_phone_number"), str):
                    found.append(meta["display_phone_number"])
        return found

    def webhook_url(self) -> str:
        """Where the cassette's webhooks were delivered (else a placeholder)."""
        return next((x.url for x in self.exchanges if is_webhook_post(x)), PLACEHOLDER_BOT_URL)
