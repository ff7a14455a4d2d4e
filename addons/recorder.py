"""Record WhatsApp Cloud API traffic into a cassette: classify, scrub, persist.

`Recorder` is a mitmproxy addon shaped like `mitmproxy/addons/save.py`: it decides
what is recorded and when, and hands the rest to its helpers. Each finished exchange
is classified (`classify`: Meta's webhook to the bot, the bot's Graph API call, a media
download), scrubbed of secrets and optionally of personal data (`flows`), and queued
for the cassette in completion order (`writer`). A failed write stops the proxy:
letting traffic through unrecorded is worse than stopping loudly.

Exchanges are scrubbed on the event loop as they finish; the writer appends whatever
has queued up in a single transaction (in a worker thread) while the next ones gather.
Each flow is let through once its own write is done.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx
from mitmproxy import exceptions
from mitmproxy import http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs

from pseudowa.addons import redact
from pseudowa.addons.classify import Routes
from pseudowa.addons.classify import classify
from pseudowa.addons.classify import parse_target
from pseudowa.addons.flows import MEDIA_ID_KEY
from pseudowa.addons.flows import MediaMeta
from pseudowa.addons.flows import Scrubber
from pseudowa.addons.flows import decoded_body
from pseudowa.addons.flows import flow_url
from pseudowa.addons.flows import header_pairs
from pseudowa.addons.flows import media_lookup_answer
from pseudowa.addons.flows import mid_of
from pseudowa.addons.flows import rebase_url
from pseudowa.addons.flows import scrub_flow
from pseudowa.addons.writer import RECORD_SOURCES
from pseudowa.addons.writer import BatchWriter
from pseudowa.addons.writer import Pending
from pseudowa.addons.writer import RecordMode
from pseudowa.addons.writer import discard_if_empty
from pseudowa.addons.writer import prepare_cassette
from pseudowa.proxy.contract.hosts import GRAPH_URL
from pseudowa.proxy.contract.hosts import MEDIA_HOST
from pseudowa.proxy.contract.hosts import MEDIA_URL
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore
from pseudowa.storage.store import resolve_url

logger = logging.getLogger(__name__)

SOURCES = tuple(source.value for source in RECORD_SOURCES)
DEFAULT_GRAPH_UPSTREAMS = [GRAPH_URL]
DEFAULT_MEDIA_HOSTS = [MEDIA_HOST]
DEFAULT_MEDIA_UPSTREAMS = [MEDIA_URL]
_STORE_OPTIONS = frozenset({"pseudowa_db", "pseudowa_cassette", "pseudowa_mode", "pseudowa_source"})
_ROUTE_OPTIONS = frozenset(
    {
        "pseudowa_webhook_upstream",
        "pseudowa_graph_upstreams",
        "pseudowa_media_upstreams",
        "pseudowa_media_hosts",
    }
)
_RECORDED = "pseudowa_recorded"  # flow.metadata key: the seq the flow was stored at


class Recorder:
    """Persist WhatsApp Cloud API exchanges flowing through mitmproxy into a cassette."""

    def __init__(self) -> None:
        self.store: CassetteStore | None = None
        self.cassette: str | None = None
        self.routes = Routes()
        self.scrubber = Scrubber()
        self.counts: collections.Counter[str] = collections.Counter()
        self.media_bytes: int = 0
        self.failed: BaseException | None = None
        self.on_recorded: Callable[[str, Exchange], None] | None = None
        # Download URLs and mids handed out by media look-ups -> media id.
        self.media_ids: dict[str, str] = {}
        self.media_meta: dict[str, MediaMeta] = {}
        self.active_flows: dict[str, tuple[http.HTTPFlow, Kind]] = {}
        self._opened: tuple[str, str] | None = None  # (store URL, cassette) prepared
        # Created by this session in mode new: dropped on close if mitmproxy never served
        # and nothing was written, so that a retry (after a port clash, say) works.
        self._created_new = False
        self._served = False  # `running` came, with every listener bound
        self._writer: BatchWriter | None = None  # writes into the open store's cassette
        self._persisting = 0  # finished flows waiting for their write

    @property
    def pseudonymizer(self) -> redact.Pseudonymizer | None:
        """The recording's pseudonyms (None unless `pseudowa_pseudonymize`)."""
        return self.scrubber.pseudonymizer

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "pseudowa_db",
            str,
            "",
            "Cassette store URL (sqlite:///path.db or postgresql://...); "
            "empty: $PSEUDOWA_DB, else sqlite:///cassettes/pseudowa.db.",
        )
        loader.add_option(
            "pseudowa_cassette",
            str,
            "",
            "Cassette to record into. Empty: the recorder stays idle.",
        )
        loader.add_option(
            "pseudowa_mode",
            str,
            "new",
            """
            new: the cassette must not exist yet; append: add to it (created
            if missing); overwrite: delete it first.
            """,
            choices=RecordMode.names(),
        )
        loader.add_option(
            "pseudowa_source",
            str,
            Source.META.value,
            "Where the traffic comes from: Meta itself, or the pseudowa sandbox.",
            choices=SOURCES,
        )
        loader.add_option(
            "pseudowa_app_secret",
            str,
            "",
            """
            Meta app secret: webhooks get a `signature` annotation (valid,
            invalid, unchecked without a secret, absent). The secret and the
            signature headers are never stored.
            """,
        )
        loader.add_option(
            "pseudowa_secrets",
            Sequence[str],
            [],
            "Extra strings scrubbed from everything recorded (access token, verify token).",
        )
        loader.add_option(
            "pseudowa_pseudonymize",
            bool,
            False,
            "Replace user phone numbers, profile names and wamids by consistent fakes.",
        )
        loader.add_option(
            "pseudowa_webhook_upstream",
            str,
            "",
            """
            The bot's webhook URL. Flows through a reverse listener targeting its
            scheme://host:port, or plain requests to it, are recorded as webhooks.
            """,
        )
        loader.add_option(
            "pseudowa_graph_upstreams",
            Sequence[str],
            list(DEFAULT_GRAPH_UPSTREAMS),
            "Graph API upstreams (scheme://host[:port]); flows to them are Graph calls.",
        )
        loader.add_option(
            "pseudowa_media_upstreams",
            Sequence[str],
            list(DEFAULT_MEDIA_UPSTREAMS),
            """
            Media download upstreams (scheme://host[:port]); flows through a reverse
            listener targeting one of them, or plain requests to them, are downloads.
            """,
        )
        loader.add_option(
            "pseudowa_media_hosts",
            Sequence[str],
            list(DEFAULT_MEDIA_HOSTS),
            """
            Hosts serving media downloads, any port: for requests through the regular
            proxy listener (a reverse listener goes by its target).
            """,
        )
        loader.add_option(
            "pseudowa_media_rewrite",
            str,
            "",
            """
            Base URL (e.g. http://127.0.0.1:8082) put in place of the scheme://host:port
            of the `url` in media look-up answers, so a bot behind reverse proxies
            downloads through the media listener.
            """,
        )

    # -- options ---------------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "pseudowa_mode" in updated:
            try:
                RecordMode.parse(opts.pseudowa_mode, "pseudowa_mode")
            except ValueError as e:
                raise _options_error(str(e)) from e
        if "pseudowa_source" in updated and opts.pseudowa_source not in SOURCES:
            raise _options_error(
                f"invalid pseudowa_source {opts.pseudowa_source!r}: use {', '.join(SOURCES)}"
            )
        if updated & _ROUTE_OPTIONS:
            try:
                self.routes = Routes.parse(
                    opts.pseudowa_webhook_upstream,
                    opts.pseudowa_graph_upstreams,
                    opts.pseudowa_media_hosts,
                    opts.pseudowa_media_upstreams,
                )
            except ValueError as e:
                raise _options_error(f"pseudowa: {e}") from e
        if "pseudowa_media_rewrite" in updated and opts.pseudowa_media_rewrite:
            try:
                parse_target(opts.pseudowa_media_rewrite, "http")
            except ValueError as e:
                raise _options_error(f"pseudowa_media_rewrite: {e}") from e
            if urlsplit(opts.pseudowa_media_rewrite).path not in ("", "/"):
                raise _options_error(
                    "pseudowa_media_rewrite takes a base URL without a path, "
                    "e.g. http://127.0.0.1:8082"
                )
        if updated & {"pseudowa_app_secret", "pseudowa_secrets"}:
            self.scrubber.configure(opts.pseudowa_app_secret, opts.pseudowa_secrets)
        if "pseudowa_pseudonymize" in updated:
            pseudonymizer = redact.Pseudonymizer() if opts.pseudowa_pseudonymize else None
            self.scrubber.pseudonymizer = pseudonymizer
        if updated & _STORE_OPTIONS:
            self._configure_store()

    def _configure_store(self) -> None:
        opts = ctx.options
        name = opts.pseudowa_cassette
        if not name:
            self._close()
            return
        url = resolve_url(opts.pseudowa_db or None)
        if self._opened == (url, name):
            # Already recording into it: a later mode change must not wipe what we wrote.
            if self.store is not None:
                try:
                    self.store.update_cassette(name, source=opts.pseudowa_source)
                except StoreError as e:
                    raise _options_error(str(e)) from e
            return
        try:
            store = CassetteStore.open(url)
        except StoreError as e:
            raise _options_error(f"cannot open the cassette store: {e}") from e
        try:
            created_new = self._prepare(store, name)
        except BaseException:
            store.close()
            raise
        self._close()
        self.store, self.cassette, self._opened = store, name, (url, name)
        self._writer = BatchWriter(
            store, name, on_written=self._written, on_failed=lambda e: self._fail(e, None)
        )
        self._created_new = created_new
        self.failed = None

    def _prepare(self, store: CassetteStore, name: str) -> bool:
        """Create (or clear, or reuse) the cassette; True when created in mode new."""
        opts = ctx.options
        mode, source = RecordMode(opts.pseudowa_mode), Source(opts.pseudowa_source)
        try:
            created: bool = prepare_cassette(store, name, mode, source, self._history_arguments())
            if not created and self.pseudonymizer is not None:
                # Fakes issued by earlier sessions stay taken.
                used = store.events(name)
                self.pseudonymizer.reserve(n for e in used for n in (e.sender, e.recipient) if n)
        except CassetteExists as e:
            raise _options_error(f"cassette {name} exists; use --mode append or overwrite") from e
        except StoreError as e:
            raise _options_error(str(e)) from e
        return created and mode == RecordMode.NEW

    def _history_arguments(self) -> dict[str, Any]:
        """The recording's settings, minus anything secret."""
        opts = ctx.options
        secrets = self.scrubber.secrets()
        return {
            "mode": opts.pseudowa_mode,
            "source": opts.pseudowa_source,
            "pseudonymize": bool(opts.pseudowa_pseudonymize),
            "webhook_upstream": redact.scrub_url(opts.pseudowa_webhook_upstream, secrets),
            "graph_upstreams": list(opts.pseudowa_graph_upstreams),
            "media_upstreams": list(opts.pseudowa_media_upstreams),
            "media_hosts": list(opts.pseudowa_media_hosts),
            "media_rewrite": opts.pseudowa_media_rewrite,
            "signature_checked": bool(opts.pseudowa_app_secret),
            "extra_secrets": len([s for s in opts.pseudowa_secrets if s]),
        }

    def close(self) -> None:
        """Close the store without flushing (idempotent); `done` flushes and closes."""
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.detach()  # anything still queued fails: the store is going
        if self.store is not None:
            if self._created_new and not self._served and not self.counts and self.cassette:
                discard_if_empty(self.store, self.cassette)
            self.store.close()
        self.store, self.cassette, self._opened, self._writer = None, None, None, None
        self._created_new = False

    @property
    def recording(self) -> bool:
        return self.store is not None and self.failed is None

    @property
    def unfinished(self) -> int:
        """Flows to record that are under way or not yet written (a stop waits for them)."""
        return len(self.active_flows) + self._persisting

    # -- hooks ------------------------------------------------------------------------

    def running(self) -> None:
        # A listener that failed to bind (port taken) means mitmproxy is about to stop
        # again (`pseudowa record` and mitmdump's error check both shut down then).
        proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        servers = list(getattr(proxyserver, "servers", ()) or ())
        self._served = all(getattr(inst, "is_running", True) for inst in servers)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._kind(flow) is not None:
            flow.request.stream = False  # bodies are recorded whole

    def request(self, flow: http.HTTPFlow) -> None:
        if self.failed is not None and self._kind(flow) is not None:
            _kill(flow)  # recording has stopped: let nothing through unrecorded

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and response.stream and self._kind(flow) is not None:
            response.stream = False

    async def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            self.active_flows.pop(flow.id, None)
            return
        kind = self._take(flow)
        if kind is None:
            return
        original = self._media_lookup(flow) if kind == Kind.GRAPH else None
        await self._persist(flow, kind, original)

    async def error(self, flow: http.HTTPFlow) -> None:
        if _RECORDED in flow.metadata:
            return  # already stored with its response
        kind = self._take(flow)
        if kind is not None:
            await self._persist(flow, kind)

    async def done(self) -> None:
        if self._writer is not None and self.failed is None and self.active_flows:
            queued = []
            for f, kind in list(self.active_flows.values()):
                try:
                    pending = self._prepare_write(f, kind, incomplete=True)
                except Exception as e:
                    logger.exception("recording stopped: could not prepare an exchange")
                    self._fail(e, None, logged=True)
                    break
                queued.append(self._writer.enqueue(pending))
            await asyncio.gather(*queued, return_exceptions=True)
        self.active_flows.clear()
        if self._writer is not None:
            await self._writer.close()
        if self.store is not None:
            await asyncio.to_thread(self._close)

    # -- classification ---------------------------------------------------------------

    def _kind(self, flow: http.HTTPFlow) -> Kind | None:
        """The flow's kind, classified once and remembered while the flow is active."""
        if self.store is None:
            return None
        found = self.active_flows.get(flow.id)
        if found is not None:
            return found[1]
        mode = flow.client_conn.proxy_mode
        mode_data = mode.data if isinstance(mode, mode_specs.ReverseMode) else ""
        kind = classify(
            flow.request.method,
            flow_url(flow),
            flow.request.host,
            flow.request.port,
            mode_data,
            self.routes,
            self.media_ids,
        )
        if kind is not None:
            self.active_flows[flow.id] = (flow, kind)
        return kind

    def _take(self, flow: http.HTTPFlow) -> Kind | None:
        """The kind of a flow that has finished; it is no longer active."""
        kind = self._kind(flow)
        self.active_flows.pop(flow.id, None)
        if kind is None and self.store is not None:
            logger.debug("not recorded: %s %s", flow.request.method, flow_url(flow))
        return kind

    # -- media look-ups ---------------------------------------------------------------

    def _media_lookup(self, flow: http.HTTPFlow) -> bytes | None:
        """Learn the download URL of a media look-up; point it at our listener if asked.

        Returns the answer as the upstream sent it when the bot gets a rewritten one.
        """
        response = flow.response
        if flow.request.method.upper() != "GET" or response is None:
            return None
        if response.status_code != 200:
            return None
        body, _ = decoded_body(response, header_pairs(response))
        answer = media_lookup_answer(body, flow.request.url)
        if answer is None:
            return None
        parsed, meta = answer
        url: str = parsed["url"]
        media_id = meta.media_id
        self.media_meta[media_id] = meta
        keys = {url, redact.scrub_url(url)}
        mid = mid_of(url)
        if mid:
            keys.add(mid)
        flow.metadata[MEDIA_ID_KEY] = media_id
        original = None
        base = ctx.options.pseudowa_media_rewrite
        if base:
            rewritten = rebase_url(url, base)
            keys.add(rewritten)
            if rewritten != url:
                parsed["url"] = rewritten
                response.content = redact.dumps_like(body, parsed)
                original = body
        for key in keys:
            self.media_ids[key] = media_id
        return original

    # -- persisting -------------------------------------------------------------------

    async def _persist(
        self, flow: http.HTTPFlow, kind: Kind, original_response: bytes | None = None
    ) -> None:
        if self.failed is not None:
            _kill(flow)  # the recording has stopped: nothing goes through unrecorded
            return
        if self._writer is None:
            logger.warning(
                "not recorded, the recording has ended: %s %s",
                flow.request.method,
                redact.scrub_url(flow_url(flow), self.scrubber.secrets()),
            )
            return
        try:
            # Scrubbed and queued without a pause, so the queue is in completion order.
            pending = self._prepare_write(flow, kind, original_response=original_response)
        except Exception as e:
            # A scrubbing bug: storing the exchange unscrubbed is no option either.
            logger.exception("recording stopped: could not prepare an exchange")
            self._fail(e, flow, logged=True)
            return
        self._persisting += 1
        try:
            seq = await self._writer.enqueue(pending)
        except Exception:
            # This write, or one queued before it, failed: the writer stopped the recording.
            _kill(flow)
            return
        finally:
            self._persisting -= 1
        flow.metadata[_RECORDED] = seq

    def _prepare_write(
        self,
        flow: http.HTTPFlow,
        kind: Kind,
        *,
        incomplete: bool = False,
        original_response: bytes | None = None,
    ) -> Pending:
        """Build the scrubbed exchange (on the event loop: it updates the pseudonyms)."""
        return scrub_flow(
            flow,
            kind,
            self.scrubber,
            self.media_ids,
            self.media_meta,
            media_rewrite=ctx.options.pseudowa_media_rewrite,
            incomplete=incomplete,
            original_response=original_response,
        )

    def _written(self, pending: Pending, exchange: Exchange) -> None:
        self.counts[pending.kind] += 1
        if pending.media is not None:
            self.media_bytes += len(pending.media)
        if self.on_recorded is not None:
            try:
                self.on_recorded(pending.kind, exchange)
            except Exception:
                logger.exception("on_recorded callback failed")

    def _fail(self, e: BaseException, flow: http.HTTPFlow | None, *, logged: bool = False) -> None:
        # Like mitmproxy's Save addon: losing recordings silently is worse than
        # stopping. The flow that could not be written is not let through either.
        # Writes queued before the failure still go ahead, unless a write failed
        # (then the writer has already halted at the one that failed).
        if self.failed is None:
            self.failed = e
            if not logged:
                logger.error("recording stopped: could not write to the cassette store: %s", e)
        if self._writer is not None:
            self._writer.halt()
        if flow is not None:
            _kill(flow)
        ctx.master.shutdown()  # type: ignore[no-untyped-call]


# mitmproxy leaves these untyped: one typed door each.


def _options_error(message: str) -> exceptions.OptionsError:
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def _kill(flow: http.HTTPFlow) -> None:
    """Stop a flow, unless it is too late for that (already answered and sent)."""
    if flow.killable:
        flow.kill()  # type: ignore[no-untyped-call]
