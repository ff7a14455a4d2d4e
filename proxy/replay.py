"""Replay a cassette against a bot: fake Graph API + webhook emitter + the replay check.

`Replay.run()` starts the fake Graph API, performs the verify handshake, delivers
the cassette's webhooks, emits status webhooks for the bot's sends, waits for the
bot to go quiet, then compares the run with the recording.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Literal

from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

from . import check
from .contract import webhooks
from .contract.errors import GraphError
from .contract.matching import graph_version
from .contract.matching import parse_json
from .contract.outbound import MarkRead
from .contract.outbound import SendRequest
from .emitter import Attempt
from .emitter import Delivery
from .emitter import Emitter
from .emitter import EmitterConfig
from .emitter import Outcome
from .graph import FakeGraph
from .graph import GraphConfig
from .journal import Journal
from .statuses import choose_failure
from .statuses import plan_statuses

logger = logging.getLogger(__name__)

DEFAULT_STATUSES = ("sent", "delivered", "read")
# An exchange annotation set by `pseudowa cassette mutate break-signature|remove-signature`:
# this one delivery goes out with a wrong signature ("bad") or none ("none"), whatever
# the run's signing option. (The recorder's own "signature" annotation only reports what
# was recorded.)
SIGNING_ANNOTATION = "replay_signature"
_SIGNING_MODES: dict[str, Literal["valid", "none", "bad"]] = {
    "valid": "valid", "none": "none", "bad": "bad",
}


@dataclass
class ReplayOptions:
    """Everything `pseudowa replay` can be told, with Meta-like defaults."""

    emitter: EmitterConfig
    graph: GraphConfig = field(default_factory=GraphConfig)
    graph_host: str = "127.0.0.1"
    graph_port: int = 8080
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    fail_status_rate: float = 0.0
    fail_status_code: int = 131026
    quiet_s: float = 1.0  # the bot is done when nothing happened for this long
    journal: bool = True
    journal_name: str | None = None


@dataclass
class Recording:
    """What the replay needs from a cassette, read once."""

    name: str
    exchanges: list[Exchange]
    deliveries: list[Delivery]
    api_version: str | None
    held_wamids: set[str]


def journal_name_for(cassette: str, now: datetime | None = None) -> str:
    """The default name of a run's journal cassette: `<cassette>.run-<UTC stamp>`."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{cassette}.run-{stamp}"


def recorded_send_wamids(exchanges: Iterable[Exchange]) -> dict[str, float]:
    """wamid -> recorded time of the send whose answer returned it."""
    found: dict[str, float] = {}
    for x in exchanges:
        if x.kind != "graph" or x.method.upper() != "POST" or not check.is_send_path(x.url):
            continue
        answer = parse_json(x.response_body)
        if x.response_status == 200 and isinstance(answer, dict):
            for msg in answer.get("messages") or []:
                if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                    found[msg["id"]] = x.started_at
    return found


def plan_deliveries(exchanges: list[Exchange]) -> tuple[list[Delivery], set[str]]:
    """The cassette's webhook POSTs as deliveries at their recorded offsets.

    A status webhook about the bot's own recorded send is held until the bot makes
    that send in this run (Meta cannot report delivery of a message not yet sent);
    it then follows at its recorded distance from the send.
    """
    t0 = exchanges[0].started_at if exchanges else 0.0
    sent_at = recorded_send_wamids(exchanges)
    out: list[Delivery] = []
    held: set[str] = set()
    for x in exchanges:
        if x.kind != "webhook" or x.method.upper() != "POST":
            continue
        payload = webhooks.parse(x.request_body)
        events = webhooks.events(payload) if payload else []
        label = f"#{x.seq} " + (
            ", ".join(f"{e.category} {e.type} {e.wamid or ''}".strip() for e in events) or "webhook"
        )
        triggers = [w for w in webhooks.status_ids(payload) if w in sent_at] if payload else []
        only_statuses = bool(events) and all(e.category == "status" for e in events)
        signing = _SIGNING_MODES.get((x.annotations or {}).get(SIGNING_ANNOTATION, ""))
        if triggers and only_statuses:
            held.add(triggers[0])
            out.append(
                Delivery(
                    body=x.request_body,
                    offset_s=x.started_at - t0,
                    label=label,
                    hold_until=triggers[0],
                    trigger_offset_s=sent_at[triggers[0]] - t0,
                    signing=signing,
                )
            )
        else:
            out.append(
                Delivery(
                    body=x.request_body, offset_s=x.started_at - t0, label=label, signing=signing
                )
            )
    # The store keeps exchanges in the order they finished; Meta sends in the order
    # deliveries start, so a webhook the bot answered slowly must not move later.
    out.sort(key=lambda d: d.offset_s)
    return out, held


def load_recording(store: CassetteStore, name: str) -> Recording:
    """Read a cassette's exchanges and plan its deliveries."""
    info = store.get_cassette(name)
    exchanges = list(store.interactions(name))
    deliveries, held = plan_deliveries(exchanges)
    version = info.graph_api_version or next(
        (v for x in exchanges if x.kind == "graph" and (v := graph_version(x.url))), None
    )
    return Recording(name, exchanges, deliveries, version, held)


@dataclass
class ReplayReport:
    """The outcome of a replay: deliveries, the check, and where the journal went."""

    cassette: str
    journal: str | None
    graph_url: str
    outcomes: list[Outcome]
    check: check.CheckResult
    never_triggered: list[str]
    unmatched: list[str]
    statuses_emitted: int = 0

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.unmatched

    def to_json(self) -> dict[str, Any]:
        delivered = sum(1 for o in self.outcomes if o.delivered)
        return {
            "cassette": self.cassette,
            "journal": self.journal,
            "graph_url": self.graph_url,
            "ok": self.ok,
            "webhooks": {
                "delivered": delivered,
                "dropped": len(self.outcomes) - delivered,
                "attempts": sum(len(o.attempts) for o in self.outcomes),
                "duplicated": sum(1 for o in self.outcomes if o.duplicated),
            },
            "statuses_emitted": self.statuses_emitted,
            "never_triggered": self.never_triggered,
            "unmatched_requests": self.unmatched,
            "check": self.check.to_json(),
        }

    def render(self) -> list[str]:
        """A readable summary, the diff last."""
        j = self.to_json()
        w = j["webhooks"]
        c = self.check
        lines = [
            f"replayed {self.cassette}: {w['delivered']} webhooks delivered, {w['dropped']} dropped, "
            f"{w['attempts']} attempts, {self.statuses_emitted} status webhooks emitted",
            f"bot sends: {c.run_sends} now, {c.recorded_sends} recorded"
            + (" (same sends, different order)" if c.reordered else ""),
        ]
        for d in c.not_ok:
            what = f"HTTP {d.status}" if d.status is not None else f"error: {d.error}"
            lines.append(f"! webhook {d.label} answered {what}")
        for label in c.undelivered:
            lines.append(f"! webhook {label} never delivered (retries exhausted)")
        for wamid, (copies, replies) in c.dedupe_failures.items():
            lines.append(
                f"! failed dedupe: {wamid} delivered {copies} times, the bot replied {replies} times"
            )
        for label in self.never_triggered:
            lines.append(f"  note: {label} not emitted: the bot never made the send it reports on")
        for u in self.unmatched:
            lines.append(f"! {u}")
        lines.extend(c.diff_lines())
        lines.append("check: OK" if self.ok else "check: DIFFERENT")
        if self.journal:
            lines.append(f"journal: cassette {self.journal}")
        return lines


class _StatusRelay:
    """Turns the bot's accepted sends into status webhooks (the graph's SendListener)."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        self.replay._on_send(send, wamid, recorded)

    def on_mark_read(self, mark: MarkRead) -> None:
        logger.debug("bot marked %s as read", mark.message_id)


class Replay:
    """One replay run of a cassette against a bot."""

    def __init__(
        self,
        store: CassetteStore,
        cassette: str,
        options: ReplayOptions,
        on_attempt: Callable[[Attempt, Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.recording = load_recording(store, cassette)
        self._rng = random.Random(options.emitter.seed)
        self._on_attempt = on_attempt
        self.statuses_emitted = 0
        self.journal_name: str | None = None
        self.emitter: Emitter | None = None

    def _on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        assert self.emitter is not None
        if recorded and wamid in self.recording.held_wamids:
            self.emitter.trigger(wamid)
            return
        fail: GraphError | None = choose_failure(
            self.options.fail_status_rate, self.options.fail_status_code, self._rng
        )
        plan = plan_statuses(
            send.wa_id,
            wamid,
            statuses=self.options.statuses,
            category=send.category,
            fail=fail,
            account=self.options.graph.account,
            api_version=self.recording.api_version,
            biz_opaque_callback_data=send.biz_opaque_callback_data,
            now=time.time(),
        )
        for delay, payload in plan:
            st = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
            self.emitter.add_now(delay, webhooks.dumps(payload), f"status {st['status']} {wamid}")
            self.statuses_emitted += 1

    async def run(self) -> ReplayReport:
        """Deliver everything, wait for quiet, check; the servers are stopped on return."""
        opts = self.options
        journal = Journal()
        if opts.journal:
            self.journal_name = opts.journal_name or journal_name_for(self.recording.name)
            info = self.store.get_cassette(self.recording.name)
            self.store.create_cassette(
                self.journal_name,
                source="replay",
                notes=f"journal of a replay of {self.recording.name}",
                graph_api_version=info.graph_api_version,
                phone_number_ids=info.phone_number_ids,
            )
            # The journal replays as a cassette of its own, so it needs the media too.
            for link in self.store.list_media(self.recording.name):
                self.store.link_media(self.journal_name, link.media_id, link.sha256, link.mime_type)
            journal = Journal(self.store, self.journal_name)
        graph = FakeGraph(
            opts.graph,
            store=self.store,
            cassette=self.recording.name,
            journal=journal,
            listener=_StatusRelay(self),
        )
        graph_url = await graph.start(opts.graph_host, opts.graph_port)
        self.emitter = Emitter(opts.emitter, journal=journal, on_attempt=self._on_attempt)
        try:
            await self.emitter.verify()
            self.emitter.add(self.recording.deliveries)
            await self.emitter.wait_idle(opts.quiet_s)
        finally:
            await self.emitter.close()
            await graph.stop()
            await journal.close()
        result = check.compare(self.recording.exchanges, journal.exchanges, opts.graph.volatile)
        result.undelivered = [o.label for o in self.emitter.dropped]
        return ReplayReport(
            cassette=self.recording.name,
            journal=self.journal_name,
            graph_url=graph_url,
            outcomes=list(self.emitter.outcomes),
            check=result,
            never_triggered=[d.label for d in self.emitter.never_triggered],
            # Without --strict an unmatched send is answered by synthesis, which is fine;
            # the check's diff already shows sends the recording lacks.
            unmatched=[str(u) for u in graph.unmatched] if opts.graph.strict else [],
            statuses_emitted=self.statuses_emitted,
        )
