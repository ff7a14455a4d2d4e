"""Record WhatsApp Cloud API traffic into a cassette: classify, scrub, persist.

`Recorder` is a mitmproxy addon shaped like `mitmproxy/addons/save.py`. Each
finished exchange is classified (Meta's webhook to the bot, the bot's Graph API
call, a media download), scrubbed of secrets (and optionally of personal
data), and appended to the cassette in completion order. A failed write stops
the proxy: letting traffic through unrecorded is worse than stopping loudly.

Exchanges are scrubbed on the event loop as they finish and queued; one writer
task appends whatever has queued up in a single transaction (in a worker thread)
while the next ones gather. Each flow is let through once its own write is done.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Literal
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from mitmproxy import ctx
from mitmproxy import exceptions
from mitmproxy import http
from mitmproxy.proxy import mode_specs

from pseudowa.addons import redact
from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.media_url import DOWNLOAD_PATH
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import EventLike
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore
from pseudowa.storage.store import resolve_url

logger = logging.getLogger(__name__)

FlowKind = Literal["webhook", "graph", "media"]
MODES = ("new", "append", "overwrite")
SOURCES = (Source.META.value, Source.SANDBOX.value)
DEFAULT_GRAPH_UPSTREAMS = ["https://graph.facebook.com"]
DEFAULT_MEDIA_HOSTS = ["lookaside.fbsbx.com"]
DEFAULT_MEDIA_UPSTREAMS = ["https://lookaside.fbsbx.com"]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ATTACHMENTS = DOWNLOAD_PATH.rstrip("/")
_STORE_OPTIONS = frozenset(
    {"pseudowa_db", "pseudowa_cassette", "pseudowa_mode", "pseudowa_source"}
)
_ROUTE_OPTIONS = frozenset(
    {
        "pseudowa_webhook_upstream",
        "pseudowa_graph_upstreams",
        "pseudowa_media_upstreams",
        "pseudowa_media_hosts",
    }
)
_RECORDED = "pseudowa_recorded"  # flow.metadata key: the seq the flow was stored at
_MEDIA_ID = "pseudowa_media_id"  # flow.metadata key: the media id a look-up answered for
INCOMPLETE = "recording stopped before the exchange finished"
MAX_BATCH = 256  # exchanges appended in one transaction at most
_MIN_LEARNED = 16  # shorter "tokens" seen in traffic are not learned as secrets


# -- classification (pure) ---------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # a listener's target is parsed for each of its flows
def parse_target(spec: str, default_scheme: str = "https") -> tuple[str, str, int]:
    """`scheme://host[:port][/path]` or `host[:port]` as (scheme, lowercase host, port)."""
    text = spec.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise ValueError(f"invalid port in {spec!r}") from e
    if not host:
        raise ValueError(f"no host in {spec!r}")
    if port is None:
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme in {spec!r}: use http:// or https://")
        port = _DEFAULT_PORTS[scheme]
    return scheme, host.lower(), port


@dataclass(frozen=True)
class Routes:
    """Which upstreams make a flow a webhook, a Graph call or a media download.

    `graph` and `media` are (host, port) of upstreams: matched against the target of the
    reverse listener a flow came through, and against where a flow goes. `media_hosts`
    are matched by host alone, and only for flows that did not come through a reverse
    listener targeting a known upstream (i.e. the regular HTTP(S) proxy listener).
    """

    webhook: tuple[str, str, int] | None = None  # the bot's scheme, host, port
    graph: frozenset[tuple[str, int]] = frozenset({("graph.facebook.com", 443)})
    media_hosts: frozenset[str] = frozenset(DEFAULT_MEDIA_HOSTS)
    media: frozenset[tuple[str, int]] = frozenset({("lookaside.fbsbx.com", 443)})

    @classmethod
    def parse(
        cls,
        webhook_upstream: str,
        graph_upstreams: Sequence[str],
        media_hosts: Sequence[str],
        media_upstreams: Sequence[str] = (),
    ) -> Routes:
        """Routes from option values; ValueError names the value that does not parse."""
        webhook = parse_target(webhook_upstream, "http") if webhook_upstream else None
        graph = frozenset(parse_target(g)[1:] for g in graph_upstreams if g.strip())
        hosts = frozenset(parse_target(h)[1] for h in media_hosts if h.strip())
        media = frozenset(parse_target(m)[1:] for m in media_upstreams if m.strip())
        return cls(webhook, graph, hosts, media)

    def by_listener(self, target: tuple[str, str, int]) -> FlowKind | None:
        """The kind of every flow through a reverse listener to `target` (None: unknown).

        One upstream serving both Graph and media (a fake) makes its listeners Graph
        listeners: downloads through them are still told by their URL.
        """
        if target[1:] in self.graph:
            return Kind.GRAPH.value
        if target[1:] in self.media:
            return Kind.MEDIA.value
        if self.webhook is not None and target == self.webhook:
            return Kind.WEBHOOK.value
        return None


def classify(
    method: str,
    url: str,
    host: str,
    port: int,
    mode_data: str,
    routes: Routes,
    known_media: Container[str] = (),
) -> FlowKind | None:
    """The kind of a flow, or None when it is not WhatsApp traffic to record.

    `url` is the request's (pretty) URL, `host`/`port` where it goes, `mode_data`
    the target of the reverse listener it came through ("" for other modes),
    and `known_media` the download URLs and `mid`s handed out by media look-ups.

    A download (Meta's attachment path, or a URL or `mid` a media look-up handed
    out) is media wherever it arrives. Any other flow through a reverse listener
    whose target is a known upstream is what that listener is for: media, Graph or
    webhook, whatever its host. The rest (the regular proxy listener, or a reverse
    listener to an unknown target) goes by where it goes: media hosts, then Graph
    upstreams, then media upstreams, then the webhook.
    """
    if method.upper() == "CONNECT":
        return None
    parts = urlsplit(url)
    mid = dict(parse_qsl(parts.query)).get("mid") if parts.query else None
    if (
        parts.path.startswith(_ATTACHMENTS)
        or url in known_media
        or (mid is not None and mid in known_media)
    ):
        return Kind.MEDIA.value
    if mode_data:
        try:
            target = parse_target(mode_data)
        except ValueError:
            pass
        else:
            kind = routes.by_listener(target)
            if kind is not None:
                return kind
    hosts = {host.lower(), (parts.hostname or "").lower()} - {""}
    if hosts & routes.media_hosts:
        return Kind.MEDIA.value
    destinations = {(host.lower(), port)}
    try:
        url_port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        url_port = None
    if parts.hostname and url_port:
        destinations.add((parts.hostname.lower(), url_port))
    if destinations & routes.graph:
        return Kind.GRAPH.value
    if destinations & routes.media:
        return Kind.MEDIA.value
    if routes.webhook is not None and routes.webhook[1:] in destinations:
        return Kind.WEBHOOK.value
    return None


# -- small pure helpers -------------------------------------------------------------------


def sha256_hex(value: object) -> str | None:
    """A sha256 in lowercase hex, from hex (Graph media metadata) or base64 (webhooks)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if len(text) == 64:
        try:
            bytes.fromhex(text)
        except ValueError:
            pass
        else:
            return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def rebase_url(url: str, base: str) -> str:
    """`url` with its scheme://host:port replaced by those of `base`."""
    old, new = urlsplit(url), urlsplit(base)
    return old._replace(scheme=new.scheme, netloc=new.netloc).geturl()


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), None)


def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _bearer(headers: Sequence[tuple[str, str]]) -> str | None:
    scheme, _, token = (_header(headers, "Authorization") or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


@dataclass
class _MediaMeta:
    """What a media look-up said about a media id."""

    media_id: str
    sha256: str | None = None  # hex
    mime_type: str | None = None


class _NotWritten(Exception):
    """A write queued behind one that failed (or after the recording stopped): not attempted."""


@dataclass
class _Job:
    """A queued write: its number in the queue and what awaits its seq."""

    number: int
    pending: _Pending
    done: asyncio.Future[int]


@dataclass
class _Pending:
    """One exchange ready to be written, with what the write needs besides the row."""

    kind: str
    exchange: Exchange
    events: list[EventLike]
    media: bytes | None = None  # a download's bytes: stored once as a blob
    media_id: str | None = None
    media_mime: str | None = None
    expected_sha256: str | None = None  # hex, from the media look-up
    phone_number_ids: frozenset[str] = frozenset()
    graph_version: str | None = None


class Recorder:
    """Persist WhatsApp Cloud API exchanges flowing through mitmproxy into a cassette."""

    def __init__(self) -> None:
        self.store: CassetteStore | None = None
        self.cassette: str | None = None
        self.routes = Routes()
        self.pseudonymizer: redact.Pseudonymizer | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.media_bytes: int = 0
        self.failed: BaseException | None = None
        self.on_recorded: Callable[[str, Exchange], None] | None = None
        # Download URLs and mids handed out by media look-ups -> media id.
        self.media_ids: dict[str, str] = {}
        self.media_meta: dict[str, _MediaMeta] = {}
        self.active_flows: dict[str, tuple[http.HTTPFlow, FlowKind]] = {}
        self._learned_secrets: set[str] = set()
        self._secrets_cache: tuple[str, ...] | None = None  # from options and traffic
        self._phone_number_ids: set[str] = set()
        self._graph_version: str | None = None
        self._opened: tuple[str, str] | None = None  # (store URL, cassette) prepared
        # Created by this session in mode new: dropped on close if mitmproxy never served
        # and nothing was written, so that a retry (after a port clash, say) works.
        self._created_new = False
        self._served = False  # `running` came, with every listener bound
        # The writer: jobs in completion order, written by one task, a batch per transaction.
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued = 0  # jobs ever queued; numbers them
        self._last_allowed: int | None = None  # after a failure: the last job still written
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._persisting = 0  # finished flows waiting for their write
        # The writer's own thread and its own connection, kept across batches.
        self._write_thread: concurrent.futures.ThreadPoolExecutor | None = None

    def load(self, loader):
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
            choices=MODES,
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

    def configure(self, updated):
        opts = ctx.options
        if "pseudowa_mode" in updated and opts.pseudowa_mode not in MODES:
            raise exceptions.OptionsError(
                f"invalid pseudowa_mode {opts.pseudowa_mode!r}: use {', '.join(MODES)}"
            )
        if "pseudowa_source" in updated and opts.pseudowa_source not in SOURCES:
            raise exceptions.OptionsError(
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
                raise exceptions.OptionsError(f"pseudowa: {e}") from e
        if "pseudowa_media_rewrite" in updated and opts.pseudowa_media_rewrite:
            try:
                parse_target(opts.pseudowa_media_rewrite, "http")
            except ValueError as e:
                raise exceptions.OptionsError(f"pseudowa_media_rewrite: {e}") from e
            if urlsplit(opts.pseudowa_media_rewrite).path not in ("", "/"):
                raise exceptions.OptionsError(
                    "pseudowa_media_rewrite takes a base URL without a path, "
                    "e.g. http://127.0.0.1:8082"
                )
        if updated & {"pseudowa_app_secret", "pseudowa_secrets"}:
            self._secrets_cache = None
        if "pseudowa_pseudonymize" in updated:
            self.pseudonymizer = redact.Pseudonymizer() if opts.pseudowa_pseudonymize else None
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
                self._run_store_call(lambda s: s.update_cassette(name, source=opts.pseudowa_source))
            return
        try:
            store = CassetteStore.open(url)
        except StoreError as e:
            raise exceptions.OptionsError(f"cannot open the cassette store: {e}") from e
        try:
            created_new = self._prepare(store, name)
        except BaseException:
            store.close()
            raise
        self._close()
        self.store, self.cassette, self._opened = store, name, (url, name)
        self._created_new = created_new
        self.failed = None

    def _run_store_call(self, call: Callable[[CassetteStore], object]) -> None:
        assert self.store is not None
        try:
            call(self.store)
        except StoreError as e:
            raise exceptions.OptionsError(str(e)) from e

    def _prepare(self, store: CassetteStore, name: str) -> bool:
        """Create (or clear, or reuse) the cassette; True when created in mode new."""
        opts = ctx.options
        mode, source = opts.pseudowa_mode, opts.pseudowa_source
        created_new = False
        try:
            if mode == "overwrite" and store.exists(name):
                store.delete_cassette(name)
            if mode == "append" and store.exists(name):
                if self.pseudonymizer is not None:
                    # Fakes issued by earlier sessions stay taken.
                    used = store.events(name)
                    self.pseudonymizer.reserve(
                        n for e in used for n in (e.sender, e.recipient) if n
                    )
            else:
                store.create_cassette(name, source=source)
                created_new = mode == "new"
            store.add_history(name, "record", self._history_arguments())
        except CassetteExists as e:
            raise exceptions.OptionsError(
                f"cassette {name} exists; use --mode append or overwrite"
            ) from e
        except StoreError as e:
            raise exceptions.OptionsError(str(e)) from e
        return created_new

    def _history_arguments(self) -> dict[str, Any]:
        """The recording's settings, minus anything secret."""
        opts = ctx.options
        return {
            "mode": opts.pseudowa_mode,
            "source": opts.pseudowa_source,
            "pseudonymize": bool(opts.pseudowa_pseudonymize),
            "webhook_upstream": redact.scrub_url(opts.pseudowa_webhook_upstream, self._secrets()),
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
        if self.store is not None:
            if self._created_new and not self._served and self.cassette is not None:
                self._discard_if_empty(self.store, self.cassette)
            self.store.close()
        self.store, self.cassette, self._opened = None, None, None
        self._created_new = False

    def _discard_if_empty(self, store: CassetteStore, name: str) -> None:
        """Delete the cassette this session created if it still holds nothing."""
        if self.counts:
            return
        try:
            info = store.get_cassette(name)
            if info.interaction_count == 0 and info.media_count == 0:
                store.delete_cassette(name)
                logger.info("cassette %s deleted: mitmproxy did not start, nothing recorded", name)
        except StoreError as e:
            logger.warning("could not delete the empty cassette %s: %s", name, e)

    def _secrets(self) -> tuple[str, ...]:
        """Everything to scrub, longest first (kept: options are copied on every read)."""
        if self._secrets_cache is None:
            opts = ctx.options
            found = {opts.pseudowa_app_secret, *opts.pseudowa_secrets, *self._learned_secrets}
            self._secrets_cache = tuple(sorted(found - {""}, key=len, reverse=True))
        return self._secrets_cache

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
        proxyserver = ctx.master.addons.get("proxyserver")
        servers = list(getattr(proxyserver, "servers", ()) or ())
        self._served = all(getattr(inst, "is_running", True) for inst in servers)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._kind(flow) is not None:
            flow.request.stream = False  # bodies are recorded whole

    def request(self, flow: http.HTTPFlow) -> None:
        if self.failed is not None and self._kind(flow) is not None and flow.killable:
            flow.kill()  # recording has stopped: let nothing through unrecorded

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
        original = self._media_lookup(flow) if kind == Kind.GRAPH.value else None
        await self._persist(flow, kind, original)

    async def error(self, flow: http.HTTPFlow) -> None:
        if _RECORDED in flow.metadata:
            return  # already stored with its response
        kind = self._take(flow)
        if kind is not None:
            await self._persist(flow, kind)

    async def done(self) -> None:
        if self.store is not None and self.failed is None and self.active_flows:
            queued = []
            for f, kind in list(self.active_flows.values()):
                try:
                    pending = self._prepare_write(f, kind, incomplete=True)
                except Exception as e:
                    logger.exception("recording stopped: could not prepare an exchange")
                    self._fail(e, None, logged=True)
                    break
                queued.append(self._enqueue(pending))
            await asyncio.gather(*queued, return_exceptions=True)
        self.active_flows.clear()
        await self._stop_writer()
        if self.store is not None:
            await asyncio.to_thread(self._close)

    # -- classification ---------------------------------------------------------------

    def _kind(self, flow: http.HTTPFlow) -> FlowKind | None:
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
            _flow_url(flow),
            flow.request.host,
            flow.request.port,
            mode_data,
            self.routes,
            self.media_ids,
        )
        if kind is not None:
            self.active_flows[flow.id] = (flow, kind)
        return kind

    def _take(self, flow: http.HTTPFlow) -> FlowKind | None:
        """The kind of a flow that has finished; it is no longer active."""
        kind = self._kind(flow)
        self.active_flows.pop(flow.id, None)
        if kind is None and self.store is not None:
            logger.debug("not recorded: %s %s", flow.request.method, _flow_url(flow))
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
        body, _ = _body(response, _headers(response))
        parsed = matching.parse_json(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("url"), str):
            return None
        url = parsed["url"]
        media_id = parsed.get("id")
        if not isinstance(media_id, str) or not media_id:
            media_id = matching.normalize_path(flow.request.url).rstrip("/").rsplit("/", 1)[-1]
        meta = _MediaMeta(media_id, sha256_hex(parsed.get("sha256")))
        if isinstance(parsed.get("mime_type"), str):
            meta.mime_type = parsed["mime_type"]
        self.media_meta[media_id] = meta
        keys = {url, redact.scrub_url(url)}
        mid = dict(parse_qsl(urlsplit(url).query)).get("mid")
        if mid:
            keys.add(mid)
        flow.metadata[_MEDIA_ID] = media_id
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
        self, flow: http.HTTPFlow, kind: FlowKind, original_response: bytes | None = None
    ) -> None:
        if self.failed is not None:
            if flow.killable:
                flow.kill()  # the recording has stopped: nothing goes through unrecorded
            return
        if self.store is None:
            logger.warning(
                "not recorded, the recording has ended: %s %s",
                flow.request.method,
                redact.scrub_url(_flow_url(flow), self._secrets()),
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
            seq = await self._enqueue(pending)
        except Exception:
            # This write, or one queued before it, failed: the writer stopped the recording.
            if flow.killable:
                flow.kill()
            return
        finally:
            self._persisting -= 1
        flow.metadata[_RECORDED] = seq

    def _enqueue(self, pending: _Pending) -> asyncio.Future[int]:
        """Queue a write; the future gets its seq, or the error that stopped the recording."""
        loop = asyncio.get_running_loop()
        self._queued += 1
        job = _Job(self._queued, pending, loop.create_future())
        self._jobs.append(job)
        if self._writer is None or self._writer.done():
            self._wake = asyncio.Event()
            if self._write_thread is None:
                self._write_thread = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="pseudowa-writer"
                )
            self._writer = loop.create_task(self._write_loop(), name="pseudowa recorder: writer")
        assert self._wake is not None
        self._wake.set()
        return job.done

    async def _write_loop(self) -> None:
        """Write queued jobs in order, all those waiting at once, until `done` and drained."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]
            if self._last_allowed is not None:
                for job in [j for j in batch if j.number > self._last_allowed]:
                    _settle(job.done, error=_NotWritten())
                batch = [j for j in batch if j.number <= self._last_allowed]
                if not batch:
                    continue
            try:
                written, error = await loop.run_in_executor(
                    self._write_thread, self._write_batch, [job.pending for job in batch]
                )
            except BaseException as e:  # cancelled: nothing is known to be written
                for job in batch:
                    _settle(job.done, error=_NotWritten())
                if isinstance(e, Exception):
                    self._fail(e, None)
                    continue
                raise
            for job, exchange in zip(batch, written):
                self._report(job.pending, exchange)
                _settle(job.done, exchange.seq)
            if error is not None:
                failed = batch[len(written)]
                self._fail(error, None, last_allowed=failed.number - 1)
                for job in batch[len(written) :]:
                    _settle(job.done, error=error if job is failed else _NotWritten())

    async def _stop_writer(self) -> None:
        """Let the writer finish what is queued, then end it."""
        if self._writer is None:
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        try:
            await self._writer
        finally:
            self._writer, self._wake, self._closing = None, None, False
            pool, self._write_thread = self._write_thread, None
            if pool is not None:
                pool.shutdown(wait=False)

    def _report(self, pending: _Pending, exchange: Exchange) -> None:
        self.counts[pending.kind] += 1
        if pending.media is not None:
            self.media_bytes += len(pending.media)
        if self.on_recorded is not None:
            try:
                self.on_recorded(pending.kind, exchange)
            except Exception:
                logger.exception("on_recorded callback failed")

    def _fail(
        self,
        e: BaseException,
        flow: http.HTTPFlow | None,
        *,
        logged: bool = False,
        last_allowed: int | None = None,
    ) -> None:
        # Like mitmproxy's Save addon: losing recordings silently is worse than
        # stopping. The flow that could not be written is not let through either.
        # Writes queued before the failure still go ahead, unless a write failed.
        if self.failed is None:
            self.failed = e
            if not logged:
                logger.error("recording stopped: could not write to the cassette store: %s", e)
        limit = self._queued if last_allowed is None else last_allowed
        if self._last_allowed is None or limit < self._last_allowed:
            self._last_allowed = limit
        if flow is not None and flow.killable:
            flow.kill()
        ctx.master.shutdown()

    def _prepare_write(
        self,
        flow: http.HTTPFlow,
        kind: FlowKind,
        *,
        incomplete: bool = False,
        original_response: bytes | None = None,
    ) -> _Pending:
        """Build the scrubbed exchange (on the event loop: it updates the pseudonyms)."""
        request, response = flow.request, flow.response
        req_headers = _headers(request)
        self._learn_secrets(flow, req_headers)
        secrets = self._secrets()
        url = _flow_url(flow)
        is_webhook_post = kind == Kind.WEBHOOK.value and request.method.upper() == "POST"
        annotations: dict[str, str] = {}
        pending = _Pending(kind, Exchange(kind, request.method, url), [])

        if is_webhook_post:
            annotations["signature"] = redact.signature_state(
                request.raw_content or b"",
                _header(req_headers, signature.HEADER),
                ctx.options.pseudowa_app_secret,
            )
        req_body, req_decoded = _body(request, req_headers)
        req_body = self._clean(req_body, secrets)

        status: int | None = None
        resp_headers: list[tuple[str, str]] = []
        resp_body = b""
        if response is not None:
            status = response.status_code
            all_headers = _headers(response)
            resp_headers = redact.scrub_headers(all_headers, secrets)
            raw, resp_decoded = _body(response, all_headers)
            if original_response is not None:
                # Store what the upstream answered, not the URL we pointed the bot at.
                raw = original_response
                annotations["media_url_rewritten"] = ctx.options.pseudowa_media_rewrite
            if kind == Kind.MEDIA.value and status == 200 and raw:
                # The bytes live once, as a blob; the headers keep the real length.
                self._media_download(pending, url, raw, resp_headers, annotations)
                resp_headers = _fix_lengths(resp_headers, None, resp_decoded)
            else:
                resp_body = self._clean(raw, secrets)
                resp_headers = _fix_lengths(resp_headers, resp_body, resp_decoded)

        if is_webhook_post:
            payload = webhooks.parse(req_body)
            if payload is not None:
                found = webhooks.events(payload)
                pending.events = list(found)
                pending.phone_number_ids = frozenset(
                    e.phone_number_id for e in found if e.phone_number_id
                )
        if kind == Kind.GRAPH.value:
            pending.graph_version, phone_number_ids = _graph_meta(url)
            if phone_number_ids:
                pending.phone_number_ids = phone_number_ids
            looked_up = flow.metadata.get(_MEDIA_ID)
            if looked_up:
                annotations["media_id"] = looked_up
                meta = self.media_meta.get(looked_up)
                if meta is not None and meta.mime_type:
                    annotations["mime_type"] = meta.mime_type

        error = flow.error.msg if flow.error is not None else None
        if incomplete and error is None and response is None:
            error = INCOMPLETE
        if response is not None and response.timestamp_end:
            finished = response.timestamp_end
        elif flow.error is not None:
            finished = flow.error.timestamp
        else:
            finished = time.time()
        pending.exchange = Exchange(
            kind=Kind(kind),
            method=request.method,
            url=_scrub_url(url, secrets),
            request_headers=_fix_lengths(
                redact.scrub_headers(req_headers, secrets), req_body, req_decoded
            ),
            request_body=req_body,
            response_status=status,
            response_headers=resp_headers,
            response_body=resp_body,
            error=error,
            started_at=request.timestamp_start or time.time(),
            finished_at=finished,
            annotations=annotations,
        )
        return pending

    def _clean(self, body: bytes, secrets: Sequence[str]) -> bytes:
        body = redact.scrub_body(body, secrets)
        if self.pseudonymizer is not None:
            body = self.pseudonymizer.rewrite_body(body)
        return body

    def _media_download(
        self,
        pending: _Pending,
        url: str,
        data: bytes,
        headers: list[tuple[str, str]],
        annotations: dict[str, str],
    ) -> None:
        mid = dict(parse_qsl(urlsplit(url).query)).get("mid")
        media_id = (
            self.media_ids.get(url)
            or self.media_ids.get(redact.scrub_url(url))
            or (self.media_ids.get(mid) if mid else None)
            or mid
        )
        meta = self.media_meta.get(media_id) if media_id else None
        mime = _mime(_header(headers, "Content-Type")) or (meta.mime_type if meta else None)
        pending.media = data
        pending.media_id = media_id
        pending.media_mime = mime or "application/octet-stream"
        pending.expected_sha256 = meta.sha256 if meta else None
        digest = hashlib.sha256(data).hexdigest()
        annotations["media_sha256"] = digest
        annotations["media_size"] = str(len(data))
        annotations["mime_type"] = pending.media_mime
        if media_id:
            annotations["media_id"] = media_id

    def _learn_secrets(self, flow: http.HTTPFlow, headers: list[tuple[str, str]]) -> None:
        """Credentials the traffic itself carries are scrubbed everywhere, even if not given.

        Only access tokens and proofs: long random strings. A verify token may be a
        plain word ("test") that replacing everywhere would mangle messages with; its
        query parameter is redacted anyway, and `pseudowa_secrets` can name it.
        """
        found = [_bearer(headers)]
        if "?" in flow.request.path:
            found += [
                v for k, v in flow.request.query.items(multi=True) if k in redact.SECRET_PARAMS
            ]
        new = {v for v in found if v and len(v) >= _MIN_LEARNED} - self._learned_secrets
        if new:
            self._learned_secrets |= new
            self._secrets_cache = None

    # -- the store (worker thread, one batch at a time) -------------------------------

    def _write_batch(self, batch: list[_Pending]) -> tuple[list[Exchange], Exception | None]:
        """Append a batch in order; the exchanges written (with their seq), and the error
        that stopped it before the rest. Consecutive exchanges share one transaction; a
        download's blob is stored first, so exchanges before it are appended before it."""
        written: list[Exchange] = []
        run: list[_Pending] = []
        try:
            store, name = self.store, self.cassette
            if store is None or name is None:
                raise StoreError("the cassette store is closed")
            for pending in batch:
                if pending.media is not None:
                    written += self._append(store, name, run)
                    run = [self._with_media(store, name, pending)]
                    written += self._append(store, name, run)
                    run = []
                else:
                    run.append(pending)
            written += self._append(store, name, run)
        except Exception as e:
            return written, e
        return written, None

    def _append(self, store: CassetteStore, name: str, run: list[_Pending]) -> list[Exchange]:
        """Append a run of exchanges in one transaction."""
        if not run:
            return []
        seqs = store.append_many(name, [(p.exchange, p.events) for p in run], batch=len(run))
        self._update_cassette(store, name, run)
        return [dataclasses.replace(p.exchange, seq=seq) for p, seq in zip(run, seqs)]

    def _with_media(self, store: CassetteStore, name: str, pending: _Pending) -> _Pending:
        """The download's exchange once its bytes are stored (as a blob when it has an id)."""
        if pending.media_id is not None:
            exchange = self._store_media(store, name, pending)
        else:
            # No media id to link the blob to: keep the bytes with the exchange.
            exchange = dataclasses.replace(
                pending.exchange,
                response_body=pending.media or b"",
                annotations={**pending.exchange.annotations, "sha256": "unknown"},
            )
        return dataclasses.replace(pending, exchange=exchange)

    def _store_media(self, store: CassetteStore, name: str, pending: _Pending) -> Exchange:
        assert pending.media is not None and pending.media_id is not None
        blob = store.put_media(pending.media, pending.media_mime or "application/octet-stream")
        store.link_media(name, pending.media_id, blob.sha256, pending.media_mime)
        expected = {
            sha
            for sha in (
                pending.expected_sha256,
                *(sha256_hex(e.media_sha256) for e in store.events(name, media_id=pending.media_id)),
            )
            if sha
        }
        if not expected:
            check = "unknown"
        elif expected == {blob.sha256}:
            check = "match"
        else:
            check = "mismatch"
            logger.warning(
                "media %s: downloaded bytes have sha256 %s, but Meta announced %s",
                pending.media_id,
                blob.sha256,
                ", ".join(sorted(expected - {blob.sha256})),
            )
        annotations = {**pending.exchange.annotations, "sha256": check}
        return dataclasses.replace(pending.exchange, response_body=b"", annotations=annotations)

    def _update_cassette(self, store: CassetteStore, name: str, run: list[_Pending]) -> None:
        """Note new phone number ids and the latest Graph API version on the cassette."""
        seen: set[str] = set()
        latest = None
        for pending in run:
            seen |= pending.phone_number_ids
            latest = pending.graph_version or latest
        new_ids = seen - self._phone_number_ids
        version = latest if latest is not None and latest != self._graph_version else None
        if not new_ids and version is None:
            return
        info = store.get_cassette(name)
        ids = set(info.phone_number_ids) | self._phone_number_ids | seen
        store.update_cassette(name, phone_number_ids=sorted(ids), graph_api_version=version)
        self._phone_number_ids = ids
        if version is not None:
            self._graph_version = version



@functools.lru_cache(maxsize=1024)  # a bot calls the same few URLs over and over
def _graph_meta(url: str) -> tuple[str | None, frozenset[str]]:
    """The Graph version a URL names, and the phone number id of a send or an upload."""
    segments = matching.normalize_path(url).strip("/").split("/")
    phone = len(segments) == 2 and segments[1] in ("messages", "media") and segments[0].isdigit()
    return matching.graph_version(url), frozenset({segments[0]} if phone else ())


@functools.lru_cache(maxsize=1024)
def _scrub_url(url: str, secrets: tuple[str, ...]) -> str:
    return redact.scrub_url(url, secrets)


def _settle(future: asyncio.Future[int], seq: int = -1, *, error: BaseException | None = None) -> None:
    if future.done():  # its flow's hook was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(seq)


def _flow_url(flow: http.HTTPFlow) -> str:
    """The URL the flow went to: the target's in reverse mode, else as the client named it."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return flow.request.url
    return flow.request.pretty_url


def _headers(message: http.Message) -> list[tuple[str, str]]:
    """`message.headers.items(multi=True)`, decoded as mitmproxy does, in a fraction of the time."""
    return [
        (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
        for k, v in message.headers.fields
    ]


def _body(message: http.Message, headers: Sequence[tuple[str, str]]) -> tuple[bytes, bool]:
    """The body with its content-encoding undone, and whether it was undone."""
    raw = message.raw_content
    if raw is None:
        return b"", False
    if not _header(headers, "content-encoding"):
        return raw, False
    content = message.get_content(strict=False)
    if content is None:
        return b"", False
    decoded = content is not raw and "content-encoding" in message.headers
    return content, decoded


def _fix_lengths(
    headers: list[tuple[str, str]], body: bytes | None, decoded: bool
) -> list[tuple[str, str]]:
    """Headers that describe the stored body: no Content-Encoding once decoded, its length.

    `body` None keeps Content-Length (a media body stored as a blob keeps its size).
    """
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if decoded and lowered == "content-encoding":
            continue
        if lowered == "content-length" and body is not None:
            value = str(len(body))
        out.append((name, value))
    return out
