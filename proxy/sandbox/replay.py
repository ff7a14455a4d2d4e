"""Replay a cassette against a bot: fake Graph API + webhook emitter + the replay check.

`Replay.run()` starts the fake Graph API, performs the verify handshake, delivers
the cassette's webhooks, emits status webhooks for the bot's sends, waits for the
bot to go quiet, then compares the run with the recording.

With `proxy_port` set, a mitmproxy regular proxy runs alongside (proxy/mitm/, in a
thread of its own) with the `Redirect` addon: a bot that keeps Meta's URLs and uses
HTTPS_PROXY, trusting mitmproxy's CA, reaches the fake Graph API all the same. Media
URLs are then handed out as https://lookaside.fbsbx.com/..., so downloads go through
the proxy too.
"""

from __future__ import annotations

import dataclasses
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
from urllib.parse import urlsplit

from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

from pseudowa.proxy.cassette import check
from pseudowa.proxy.mitm import runner as mitm
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.matching import graph_version
from pseudowa.proxy.contract.matching import parse_json
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.sandbox.emitter import Attempt
from pseudowa.proxy.sandbox.emitter import Delivery
from pseudowa.proxy.sandbox.emitter import Emitter
from pseudowa.proxy.sandbox.emitter import EmitterConfig
from pseudowa.proxy.sandbox.emitter import Outcome
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.proxy.sandbox.statuses import choose_failure
from pseudowa.proxy.sandbox.statuses import plan_statuses

logger = logging.getLogger(__name__)

MEDIA_URL = "https://lookaside.fbsbx.com"  # base of media URLs handed out in proxy mode
_WILDCARD_HOSTS = ("0.0.0.0", "::")

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
    # A regular HTTP(S) proxy on graph_host:proxy_port sending Meta's hosts to the fake
    # Graph API (0 picks a free port; None: no proxy).
    proxy_port: int | None = None
    confdir: str | None = None  # mitmproxy's confdir, where its CA lives; None: ~/.mitmproxy
    redirect_hosts: tuple[str, ...] = ()  # redirected besides graph.facebook.com, lookaside


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
    proxy_url: str | None = None  # the redirecting proxy, when there was one
    redirected: int = 0  # requests it sent to the fake Graph API

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.unmatched

    def to_json(self) -> dict[str, Any]:
        delivered = sum(1 for o in self.outcomes if o.delivered)
        return {
            "cassette": self.cassette,
            "journal": self.journal,
            "graph_url": self.graph_url,
            "proxy": {"url": self.proxy_url, "redirected": self.redirected} if self.proxy_url else None,
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
        if self.proxy_url:
            lines.append(f"proxy {self.proxy_url}: {self.redirected} requests redirected "
                         "to the fake Graph API")
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
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """`on_line` gets the proxy's banner and mitmproxy's warnings (from its thread)."""
        self.store = store
        self.options = options
        self.recording = load_recording(store, cassette)
        self._rng = random.Random(options.emitter.seed)
        self._on_attempt = on_attempt
        self._on_line = on_line
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
        if opts.proxy_port is not None:
            if opts.proxy_port and opts.proxy_port == opts.graph_port:
                raise UserError(f"the proxy and the fake Graph API cannot share port "
                                f"{opts.proxy_port}: give each its own")
            # Before the journal is created: a port taken leaves nothing behind.
            mitm.check_free(opts.graph_host, opts.proxy_port, "proxy")
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
        graph_config = opts.graph
        if opts.proxy_port is not None and not graph_config.public_base_url:
            # Meta-looking media URLs, downloaded through the proxy like the real ones.
            graph_config = dataclasses.replace(graph_config, public_base_url=MEDIA_URL)
        graph = FakeGraph(
            graph_config,
            store=self.store,
            cassette=self.recording.name,
            journal=journal,
            listener=_StatusRelay(self),
        )
        graph_url = await graph.start(opts.graph_host, opts.graph_port)
        self.emitter = Emitter(opts.emitter, journal=journal, on_attempt=self._on_attempt)
        proxy: mitm.ProxyThread | None = None
        redirect: Any = None
        try:
            if opts.proxy_port is not None:
                proxy, redirect = await self._start_proxy(graph_url)
            await self.emitter.verify()
            self.emitter.add(self.recording.deliveries)
            await self.emitter.wait_idle(opts.quiet_s)
        finally:
            await self.emitter.close()
            if proxy is not None:
                await proxy.stop()
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
            proxy_url=proxy.url if proxy is not None else None,
            redirected=redirect.redirected if redirect is not None else 0,
        )

    async def _start_proxy(self, graph_url: str) -> tuple[mitm.ProxyThread, Any]:
        """The redirecting proxy, listening, its banner shown; and its Redirect addon."""
        from pseudowa.addons.redirect import META_HOSTS
        from pseudowa.addons.redirect import Redirect

        opts = self.options
        assert opts.proxy_port is not None
        # The fake may listen on every interface; the proxy reaches it on loopback.
        host = urlsplit(graph_url).hostname
        if host in _WILDCARD_HOSTS:
            loopback = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
            graph_url = graph_url.replace(mitm.show_host(host), loopback, 1)
        redirect = Redirect()
        proxy = mitm.ProxyThread(
            host=opts.graph_host,
            port=opts.proxy_port,
            addons=[redirect],
            options={
                "pseudowa_redirect_target": graph_url,
                "pseudowa_redirect_hosts": list(opts.redirect_hosts),
            },
            confdir=opts.confdir,
            on_line=self._on_line,
        )
        url = await proxy.start()
        if self._on_line is not None:
            hosts = dict.fromkeys((*META_HOSTS, *opts.redirect_hosts))
            for line in proxy_banner(url, graph_url, str(proxy.ca_cert_path), hosts):
                self._on_line(line)
        return proxy, redirect
