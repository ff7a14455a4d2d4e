"""Sandbox: the fake Graph API, the webhook emitter, the status relay and the journal as
one running thing, with a Python API that every front end (CLI, fixtures, the live page)
stands on.

    async with Sandbox(SandboxConfig(db="sqlite:///x.db")) as sb:
        start_bot(graph_url=sb.graph_url)            # the URL is known before the bot starts
        await sb.connect_bot("http://127.0.0.1:8000/webhook")
        alice = sb.user("16505551234", name="Alice")
        await alice.send_text("hi")
        replies = await alice.wait_for_replies(1, timeout=5)
        report = await sb.replay("image-round-trip")

The fake Graph API is bound first (port 0 allowed), then the emitter runs in the
background until the sandbox closes. Every send the bot makes is told to the sandbox
(it is the graph's SendListener): the status relay answers it with status webhooks and
the simulated user it was addressed to gets it as a reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from pseudowa.addons.redirect import Redirect
from pseudowa.proxy.cassette.check import compare
from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.contract import hosts
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import ListenError
from pseudowa.proxy.mitm.runner import cannot_listen
from pseudowa.proxy.mitm.runner import check_free
from pseudowa.proxy.mitm.thread import ProxyThread
from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.deliveries import Attempt
from pseudowa.proxy.sandbox.deliveries import Outcome
from pseudowa.proxy.sandbox.deliveries import Progress
from pseudowa.proxy.sandbox.emitter import Emitter
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.proxy.sandbox.media import RunMedia
from pseudowa.proxy.sandbox.replay import ReplayReport
from pseudowa.proxy.sandbox.replay import journal_name_for
from pseudowa.proxy.sandbox.replay import load_recording
from pseudowa.proxy.sandbox.replay import never_triggered_note
from pseudowa.proxy.sandbox.replay import proxy_banner
from pseudowa.proxy.sandbox.replay import unreplayed_note
from pseudowa.proxy.sandbox.statuses import StatusRelay
from pseudowa.proxy.sandbox.users import Reply
from pseudowa.proxy.sandbox.users import User
from pseudowa.proxy.sandbox.users import digits
from pseudowa.storage.export import is_export_dir
from pseudowa.storage.export import temporary_import
from pseudowa.storage.records import CassetteInfo
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

logger = logging.getLogger(__name__)

OnAttempt = Callable[[Attempt, Outcome], None]
OnLine = Callable[[str], None]
OnProgress = Callable[[Progress], None]


class Sandbox:
    """A Meta-faithful WhatsApp Cloud API sandbox for one bot; an async context manager."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        store: CassetteStore | None = None,
        on_attempt: OnAttempt | None = None,
        on_line: OnLine | None = None,
        on_progress: OnProgress | None = None,
    ) -> None:
        """`store` overrides `config.db` (and is not closed by the sandbox); `on_attempt`
        sees every webhook POST; `on_line` gets the proxy's banner and mitmproxy's warnings;
        `on_progress` is told where deliveries stand whenever a retry is due or settles."""
        self.config = config or SandboxConfig()
        self.store = store
        self._owns_store = False
        self.journal = Journal()  # the live session's exchanges (replays keep their own)
        self._on_attempt = on_attempt
        self._on_line = on_line
        self.emitter = Emitter(
            self.config.emitter_config(),
            journal=self.journal,
            on_attempt=on_attempt,
            on_progress=on_progress,
        )
        self.relay = StatusRelay(
            self.emitter,
            account=self.config.account,
            statuses=self.config.statuses,
            fail_rate=self.config.fail_status_rate,
            fail_code=self.config.fail_status_code,
            seed=self.config.seed,
        )
        public_base = hosts.MEDIA_URL if self.config.proxy_port is not None else None
        self.graph = FakeGraph(
            self.config.graph_config(public_base), journal=self.journal, listener=self
        )
        self.sends: list[Reply] = []  # every send the bot made, in order
        self.read_receipts: list[MarkRead] = []
        self._users: dict[str, User] = {}
        self._sent = asyncio.Event()  # set on every send, for wait_for_replies
        self._graph_url: str | None = None
        self._proxy: ProxyThread | None = None
        self._redirect: Redirect | None = None
        self._replaying = asyncio.Lock()
        self._started = False
        self._verified = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store, bind the fake Graph API (then the proxy), start delivering."""
        if self._started:
            raise RuntimeError("the sandbox is already started")
        self._started = True
        config = self.config
        try:
            if config.proxy_port:
                # Before anything binds or is created: a taken port leaves nothing behind.
                check_free(config.graph_host, config.proxy_port, "proxy")
            if self.store is None and config.db is not None:
                self.store = await asyncio.to_thread(CassetteStore.open, config.db)
                self._owns_store = True
            try:
                self._graph_url = await self.graph.start(config.graph_host, config.graph_port)
            except OSError as e:
                why = e.strerror or str(e)
                raise ListenError(
                    cannot_listen(config.graph_host, config.graph_port, "graph", why)
                ) from e
            if config.proxy_port is not None:
                await self._start_proxy()
            self.emitter.start()
            # The handshake waits for the first delivery or replay: the bot may start later.
            self.emitter.config.bot_url = config.bot_url or ""
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop delivering, stop the servers, flush the journal, close an owned store."""
        await self.emitter.close()
        if self._proxy is not None:
            await self._proxy.stop()
            self._proxy = None
        await self.graph.stop()
        try:
            await self.journal.close()
        finally:
            if self._owns_store and self.store is not None:
                self.store.close()
                self.store = None
                self._owns_store = False

    @property
    def graph_url(self) -> str:
        """The fake Graph API's base URL: the bot's Graph base URL points here."""
        if self._graph_url is None:
            raise RuntimeError("the sandbox is not started: use `async with Sandbox(...)`")
        return self._graph_url

    @property
    def proxy_url(self) -> str | None:
        """The redirecting HTTP(S) proxy's URL, when `proxy_port` is set."""
        return self._proxy.url if self._proxy is not None else None

    @property
    def bot_url(self) -> str | None:
        """The bot's webhook URL once connected."""
        return self.emitter.config.bot_url or None

    @property
    def outcomes(self) -> list[Outcome]:
        """What became of every webhook POST so far."""
        return self.emitter.outcomes

    # -- the bot -------------------------------------------------------------------------------

    async def connect_bot(self, url: str) -> None:
        """Point webhooks at `url` and do Meta's verify handshake (unless skip_verify).

        Raises VerifyFailed, with the reason in one line, when the bot does not echo the
        challenge."""
        self._verified = False
        self.emitter.config.bot_url = url
        await self.emitter.verify()
        self._verified = True

    def user(self, phone: str, name: str | None = None) -> User:
        """The simulated WhatsApp user with this number (the same object for the same number)."""
        wa_id = digits(phone)
        if wa_id not in self._users:
            self._users[wa_id] = User(self, wa_id, name or f"User {wa_id[-4:]}")
        elif name is not None:
            self._users[wa_id].name = name
        return self._users[wa_id]

    @property
    def users(self) -> list[User]:
        """The simulated users, in the order they were first named."""
        return list(self._users.values())

    async def deliver(self, body: bytes, label: str = "webhook") -> Outcome:
        """POST one webhook body to the bot now, signed like Meta; its Outcome once the first
        attempt is over (Meta's retries of a failed one go on in the background)."""
        if not self.bot_url:
            raise ConfigError("no bot to deliver to: call connect_bot(url) first")
        if not self._verified:
            await self.connect_bot(self.bot_url)
        return await self.emitter.deliver(body, label)

    async def redeliver(self, wamid: str) -> Outcome:
        """Deliver again, byte for byte, the webhook that carried message `wamid`, as Meta
        does when it saw no 200 in time: a bot must answer it once."""
        for x in reversed(self.journal.exchanges):
            if x.kind == "webhook" and x.method == "POST":
                if any(e.wamid == wamid for e in index_exchange(x)):
                    return await self.deliver(x.request_body, f"redelivery of {wamid}")
        raise ConfigError(f"no webhook carrying {wamid} was delivered in this session")

    async def idle(self, quiet_s: float | None = None) -> None:
        """Return once no webhook is due or in flight, no Graph request is being served and
        nothing happened for `quiet_s` seconds (default: `config.quiet_s`)."""
        quiet = self.config.quiet_s if quiet_s is None else quiet_s
        while True:
            await self.emitter.idle(quiet)
            graph_quiet = time.monotonic() - self.graph.last_activity
            if self.graph.in_flight == 0 and graph_quiet >= quiet:
                if not self.emitter.busy:
                    return
                continue
            await asyncio.sleep(max(0.01, quiet - graph_quiet))

    # -- the graph's SendListener ------------------------------------------------------------

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        """An accepted send: statuses follow, and the addressed user gets a reply."""
        try:
            self.relay.on_send(send, wamid, recorded)
        finally:
            reply = Reply(send, wamid, recorded, time.time())
            self.sends.append(reply)
            user = self._users.get(send.wa_id)
            if user is not None:
                user.replies.append(reply)
            self._sent.set()

    def on_mark_read(self, mark: MarkRead) -> None:
        """The bot marked an inbound message read (blue ticks)."""
        self.read_receipts.append(mark)

    async def wait_for_send(self, timeout: float) -> None:
        """Wait until the bot makes its next send (raises TimeoutError)."""
        self._sent.clear()
        await asyncio.wait_for(self._sent.wait(), timeout)

    async def sends_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait, send by send of the bot's, until `done()` holds or `timeout` passes;
        whether it holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await self.wait_for_send(left)
            except TimeoutError:
                pass
        return True

    # -- replay -------------------------------------------------------------------------------

    async def replay(
        self, cassette: str | Path, *, check: bool = True, journal_name: str | None = None
    ) -> ReplayReport:
        """Replay a cassette's webhooks to the connected bot, answer its calls from the
        recording, wait until it is quiet, and compare its sends with the recorded ones.

        `cassette` is a name in the store or an exported cassette directory (imported into a
        throwaway store; no journal is kept then). `check=False` skips the comparison of sends
        (the report still lists delivery problems). `journal_name` overrides the config's."""
        journal_name = journal_name or self.config.journal_name
        async with self._replaying:
            source = str(cassette)
            if is_export_dir(source) or "/" in source:  # cassette names never hold a "/"
                if journal_name:
                    raise ConfigError(
                        "journal_name needs a cassette in the store: import the directory "
                        "first with `pseudowa cassette import`, then replay it by name"
                    )
                with ExitStack() as stack:
                    store, name = stack.enter_context(
                        temporary_import(Path(source), index_exchange)
                    )
                    return await self._replay(store, name, check=check, journal=None)
            if self.store is None:
                raise ConfigError(
                    f"cannot replay cassette {source!r}: the sandbox has no "
                    "store (give db=...) and it is not an exported directory"
                )
            if not self.config.journal:
                journal_name = None
            else:
                journal_name = journal_name or journal_name_for(source)
            return await self._replay(self.store, source, check=check, journal=journal_name)

    async def _replay(
        self, store: CassetteStore, name: str, *, check: bool, journal: str | None
    ) -> ReplayReport:
        if not self.bot_url:
            raise ConfigError("no bot to replay to: call connect_bot(url) first")
        recording = await asyncio.to_thread(load_recording, store, name)
        run = Journal()
        if journal is not None:
            await asyncio.to_thread(_create_journal, store, name, journal)
            run = Journal(store, journal)
        first_outcome = len(self.emitter.outcomes)
        emitted_before = self.relay.emitted
        redirected_before = self._redirect.redirected if self._redirect is not None else 0
        await self.graph.use_cassette(store, name)
        self.graph.journal = self.emitter.journal = run
        self.relay.held = set(recording.held_wamids)
        self.relay.api_version = recording.api_version
        try:
            await self.emitter.verify()  # Meta verifies on subscribing; the journal keeps it
            self._verified = True
            self.emitter.add(recording.deliveries)
            await self.idle()
        finally:
            never = self.emitter.drop_held()
            superseded = set(self.relay.superseded)
            self.relay.held = set()
            self.relay.superseded = set()
            self.relay.api_version = None
            self.graph.journal = self.emitter.journal = self.journal
            unmatched = list(self.graph.unmatched)
            unreplayed = [
                unreplayed_note(a.describe(), *a.error)
                for a in self.graph.recordings.unreplayed_errors()
            ]
            await self.graph.use_cassette(None, None)
            await run.close()
        outcomes = self.emitter.outcomes[first_outcome:]
        result = compare(
            recording.exchanges,
            run.exchanges,
            self.graph.config.volatile,
            tolerate_retries=self.config.tolerate_retries,
        )
        result.undelivered = [o.label for o in outcomes if o.dropped_reason]
        return ReplayReport(
            cassette=name,
            journal=journal,
            graph_url=self.graph_url,
            outcomes=outcomes,
            checked=check,
            check=result,
            never_triggered=[
                never_triggered_note(d.label, d.hold_until, d.hold_until in superseded)
                for d in never
            ],
            # Without strict, an unmatched send is answered by synthesis, which is fine;
            # the check's diff already shows sends the recording lacks.
            unmatched=[str(u) for u in unmatched] if self.config.strict else [],
            unreplayed_errors=unreplayed,
            statuses_emitted=self.relay.emitted - emitted_before,
            proxy_url=self.proxy_url,
            redirected=(
                self._redirect.redirected - redirected_before if self._redirect is not None else 0
            ),
        )

    # -- saving a live session ---------------------------------------------------------------

    async def save_session(
        self,
        name: str,
        *,
        store: CassetteStore | None = None,
        notes: str = "",
        append: bool = False,
    ) -> CassetteInfo:
        """Keep the live session so far (every webhook, Graph call and download, and the
        media users sent or the bot uploaded) as cassette `name`, replayable like a recording.

        Raises CassetteExists when the name is taken, unless `append`: then the session is
        added after the exchanges cassette `name` already holds (a new episode). `store`
        defaults to the sandbox's."""
        target = store or self.store
        if target is None:
            raise ConfigError("saving a session needs a store: give db=... or store=...")
        exchanges = list(self.journal.exchanges)
        media = [*self.graph.media.received.values(), *self.graph.media.uploads.values()]
        blobs = [(m, await self.graph.media.read(m)) for m in media]
        await asyncio.to_thread(self._write_session, target, name, exchanges, blobs, notes, append)
        return await asyncio.to_thread(target.get_cassette, name)

    def _write_session(
        self,
        store: CassetteStore,
        name: str,
        exchanges: list[Exchange],
        blobs: list[tuple[RunMedia, bytes]],
        notes: str,
        append: bool,
    ) -> None:
        if append:
            store.get_cassette(name)  # CassetteNotFound before anything is written
        else:
            store.create_cassette(
                name,
                source="sandbox",
                notes=notes or "a live pseudowa sandbox session",
                graph_api_version=hosts.DEFAULT_API_VERSION,
                phone_number_ids=[self.config.phone_number_id],
            )
        try:
            store.append_many(name, [(x, index_exchange(x)) for x in exchanges])
            for media, data in blobs:
                blob = store.put_media(data, media.mime_type)
                store.link_media(name, media.media_id, blob.sha256, media.mime_type)
        except BaseException:
            if not append:
                store.delete_cassette(name)  # no half-saved session
            raise

    # -- the redirecting proxy -----------------------------------------------------------------

    async def _start_proxy(self) -> None:
        assert self.config.proxy_port is not None
        # The fake may listen on every interface; the proxy reaches it on loopback.
        graph_url = self.graph.local_url or self.graph_url
        self._redirect = Redirect()
        self._proxy = ProxyThread(
            host=self.config.graph_host,
            port=self.config.proxy_port,
            addons=[self._redirect],
            options={
                "pseudowa_redirect_target": graph_url,
                "pseudowa_redirect_hosts": list(self.config.redirect_hosts),
            },
            confdir=self.config.confdir,
            on_line=self._on_line,
        )
        url = await self._proxy.start()
        if self._on_line is not None:
            shown = dict.fromkeys((*hosts.META_HOSTS, *self.config.redirect_hosts))
            for line in proxy_banner(url, graph_url, str(self._proxy.ca_cert_path), shown):
                self._on_line(line)


def _create_journal(store: CassetteStore, cassette: str, journal: str) -> None:
    """The run's journal cassette: replayable on its own, so it links the cassette's media."""
    info = store.get_cassette(cassette)
    store.create_cassette(
        journal,
        source="replay",
        notes=f"journal of a replay of {cassette}",
        graph_api_version=info.graph_api_version,
        phone_number_ids=info.phone_number_ids,
    )
    for link in store.list_media(cassette):
        store.link_media(journal, link.media_id, link.sha256, link.mime_type)


async def replay(
    cassette: str | Path,
    config: SandboxConfig | None = None,
    *,
    store: CassetteStore | None = None,
    check: bool = True,
    on_attempt: OnAttempt | None = None,
    on_line: OnLine | None = None,
    on_progress: OnProgress | None = None,
) -> ReplayReport:
    """One replay run in a sandbox of its own: start it, connect `config.bot_url` (verify
    handshake), replay `cassette`, stop. What `pseudowa replay` does."""
    config = config or SandboxConfig()
    if not config.bot_url:
        raise ConfigError("replay needs the bot's webhook URL (bot_url)")
    if store is not None and not is_export_dir(str(cassette)) and "/" not in str(cassette):
        store.get_cassette(str(cassette))  # an unknown name fails here, before any port opens
    async with Sandbox(
        config, store=store, on_attempt=on_attempt, on_line=on_line, on_progress=on_progress
    ) as sb:
        return await sb.replay(cassette, check=check)
