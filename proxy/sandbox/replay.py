"""What a replay is made of: a cassette read as deliveries, and the report of a run.

`Sandbox.replay()` (sandbox.py) runs it: it points the fake Graph API at the cassette,
performs the verify handshake, delivers the planned webhooks, lets status webhooks follow
the bot's sends, waits for the bot to go quiet, then compares the run with the recording
into a `ReplayReport`. Everything here is plain data and planning, no I/O but the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Literal

from pseudowa.proxy.cassette import check
from pseudowa.proxy.cassette.check import recorded_send_wamids
from pseudowa.proxy.cassette.tape import SIGNING_ANNOTATION
from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.matching import graph_version
from pseudowa.proxy.sandbox.deliveries import Delivery
from pseudowa.proxy.sandbox.deliveries import Outcome
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

_SIGNING_MODES: dict[str, Literal["valid", "none", "bad"]] = {
    "valid": "valid",
    "none": "none",
    "bad": "bad",
}


def proxy_banner(proxy_url: str, graph_url: str, ca: str, hosts: Iterable[str]) -> list[str]:
    """Where the proxy is, what it does, and the environment a bot needs to use it."""
    return [
        f"proxy    {proxy_url}: {', '.join(hosts)} -> fake Graph API {graph_url}; "
        "other hosts pass through",
        f"         trust mitmproxy's CA certificate {ca}; run the bot with",
        f"         HTTPS_PROXY={proxy_url} SSL_CERT_FILE={ca} REQUESTS_CA_BUNDLE={ca} "
        f"NODE_EXTRA_CA_CERTS={ca}",
    ]


@dataclass
class Recording:
    """What the replay needs from a cassette, read once."""

    name: str
    exchanges: list[Exchange]
    deliveries: list[Delivery]
    api_version: str | None
    held_wamids: set[str]


def never_triggered_note(label: str, wamid: str | None, failed: bool) -> str:
    """Why a recorded status webhook held for the bot's send was not emitted."""
    if failed:
        return f"{label} not emitted: that send was reported failed instead (fail_status_rate)"
    return (
        f"{label} not emitted: no send of this run was answered with the recorded "
        f"message id {wamid} (the send it reports on was not replayed)"
    )


def unreplayed_note(send: str, code: int | None, message: str) -> str:
    """Why a recorded Graph error never reached the bot this run."""
    error = f"error {code}" if code is not None else "error"
    detail = f" ({message})" if message else ""
    return (
        f"recorded {error}{detail} answering {send} was not replayed: no send of this run "
        "matched it, so the bot's handling of it did not run"
    )


def accept_run(store: CassetteStore, name: str, journal: str) -> int:
    """Make the sends of the run kept as `journal` the recording of cassette `name`
    (snapshot update), logged in its history; returns how many sends it now holds."""
    recorded = list(store.interactions(name))
    updated = check.accept_run_sends(recorded, list(store.interactions(journal)))
    store.replace_interactions(name, [(x, index_exchange(x)) for x in updated])
    sends = len(check.sends(updated))
    store.add_history(name, "check-update", {"journal": journal, "sends": sends})
    return sends


def journal_name_for(cassette: str, now: datetime | None = None) -> str:
    """The default name of a run's journal cassette: `<cassette>.run-<UTC stamp>`."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{cassette}.run-{stamp}"


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
    never_triggered: list[str]  # recorded statuses not emitted, each with the reason
    unmatched: list[str]
    unreplayed_errors: list[str] = field(default_factory=list)  # recorded errors not replayed
    statuses_emitted: int = 0
    proxy_url: str | None = None  # the redirecting proxy, when there was one
    redirected: int = 0  # requests it sent to the fake Graph API
    checked: bool = True  # False: the bot's sends were not held against the recording

    @property
    def ok(self) -> bool:
        """The bot behaved as recorded: same sends, dedupe held, every webhook answered 200
        (with `checked=False`, only the deliveries count)."""
        if not self.checked:
            retried = bool(self.check.not_ok) and not self.check.tolerate_retries
            return not (self.check.undelivered or self.unmatched or retried)
        return self.check.ok and not self.unmatched

    @property
    def problems(self) -> list[str]:
        """One readable line per problem, then the send diff: empty when `ok`."""
        if self.ok:
            return []
        lines = [line for line in self.render() if line.startswith(("! ", "  refused: "))]
        if self.checked:
            lines.extend(self.check.diff_lines())
        return lines

    def to_json(self) -> dict[str, Any]:
        delivered = sum(1 for o in self.outcomes if o.delivered)
        return {
            "cassette": self.cassette,
            "journal": self.journal,
            "graph_url": self.graph_url,
            "proxy": {"url": self.proxy_url, "redirected": self.redirected}
            if self.proxy_url
            else None,
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
            "unreplayed_errors": self.unreplayed_errors,
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
            + (" (same sends, different order)" if c.reordered else "")
            + (f"; {len(c.refused)} refused by the Graph API" if c.refused else ""),
        ]
        for r in c.refused:
            lines.append(f"  refused: {r.describe()}")
        # With tolerate_retries a retried webhook is a note, not a failure.
        mark = "  note:" if c.tolerate_retries else "!"
        for d in c.not_ok:
            what = f"HTTP {d.status}" if d.status is not None else f"error: {d.error}"
            lines.append(f"{mark} webhook {d.label} answered {what}")
        for label in c.undelivered:
            lines.append(f"! webhook {label} never delivered (retries exhausted)")
        for wamid, (copies, replies) in c.dedupe_failures.items():
            lines.append(
                f"! failed dedupe: {wamid} delivered {copies} times, the bot replied {replies} times"
            )
        for note in self.never_triggered:
            lines.append(f"  note: {note}")
        for note in self.unreplayed_errors:
            lines.append(f"  note: {note}")
        for u in self.unmatched:
            lines.append(f"! {u}")
        if self.proxy_url:
            lines.append(
                f"proxy {self.proxy_url}: {self.redirected} requests redirected "
                "to the fake Graph API"
            )
        lines.extend(c.diff_lines())
        lines.append("check: OK" if self.ok else "check: DIFFERENT")
        if self.journal:
            lines.append(f"journal: cassette {self.journal}")
        return lines
