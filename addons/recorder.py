"""Record WhatsApp Cloud API traffic into a cassette: classify, scrub, persist.

`Recorder` is a mitmproxy addon shaped like `mitmproxy/addons/save.py`. Each
finished exchange is classified (Meta's webhook to the bot, the bot's Graph API
call, a media download), scrubbed of secrets (and optionally of personal
data), and appended to the cassette in completion order. A failed write stops
the proxy: letting traffic through unrecorded is worse than stopping loudly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
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
from pseudowa.proxy.journal import event_data
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import EventData
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
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ATTACHMENTS = DOWNLOAD_PATH.rstrip("/")
_STORE_OPTIONS = frozenset(
    {"pseudowa_db", "pseudowa_cassette", "pseudowa_mode", "pseudowa_source"}
)
_ROUTE_OPTIONS = frozenset(
    {"pseudowa_webhook_upstream", "pseudowa_graph_upstreams", "pseudowa_media_hosts"}
)
_RECORDED = "pseudowa_recorded"  # flow.metadata key: the seq the flow was stored at
_MEDIA_ID = "pseudowa_media_id"  # flow.metadata key: the media id a look-up answered for
INCOMPLETE = "recording stopped before the exchange finished"
_MIN_LEARNED = 16  # shorter "tokens" seen in traffic are not learned as secrets


# -- classification (pure) ---------------------------------------------------------------


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
    """Which upstreams make a flow a webhook, a Graph call or a media download."""

    webhook: tuple[str, str, int] | None = None  # the bot's scheme, host, port
    graph: frozenset[tuple[str, int]] = frozenset({("graph.facebook.com", 443)})
    media_hosts: frozenset[str] = frozenset(DEFAULT_MEDIA_HOSTS)

    @classmethod
    def parse(
        cls, webhook_upstream: str, graph_upstreams: Sequence[str], media_hosts: Sequence[str]
    ) -> Routes:
        """Routes from option values; ValueError names the value that does not parse."""
        webhook = parse_target(webhook_upstream, "http") if webhook_upstream else None
        graph = frozenset(parse_target(g)[1:] for g in graph_upstreams if g.strip())
        hosts = frozenset(parse_target(h)[1] for h in media_hosts if h.strip())
        return cls(webhook, graph, hosts)


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
    Media first, then Graph, then the webhook.
    """
    if method.upper() == "CONNECT":
        return None
    parts = urlsplit(url)
    hosts = {host.lower(), (parts.hostname or "").lower()} - {""}
    mid = dict(parse_qsl(parts.query)).get("mid")
    if (
        parts.path.startswith(_ATTACHMENTS)
        or hosts & routes.media_hosts
        or url in known_media
        or (mid is not None and mid in known_media)
    ):
        return Kind.MEDIA.value
    destinations = {(host.lower(), port)}
    try:
        url_port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        url_port = None
    if parts.hostname and url_port:
        destinations.add((parts.hostname.lower(), url_port))
    target = None
    if mode_data:
        try:
            target = parse_target(mode_data)
        except ValueError:
            target = None
    if destinations & routes.graph or (target is not None and target[1:] in routes.graph):
        return Kind.GRAPH.value
    if routes.webhook is not None:
        if target == routes.webhook or routes.webhook[1:] in destinations:
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


@dataclass
class _Pending:
    """One exchange ready to be written, with what the write needs besides the row."""

    kind: str
    exchange: Exchange
    events: list[EventData]
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
        self._phone_number_ids: set[str] = set()
        self._graph_version: str | None = None
        self._opened: tuple[str, str] | None = None  # (store URL, cassette) prepared
        self._lock = asyncio.Lock()

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
            "pseudowa_media_hosts",
            Sequence[str],
            list(DEFAULT_MEDIA_HOSTS),
            "Hosts serving media downloads.",
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
            self._prepare(store, name)
        except BaseException:
            store.close()
            raise
        self._close()
        self.store, self.cassette, self._opened = store, name, (url, name)
        self.failed = None

    def _run_store_call(self, call: Callable[[CassetteStore], object]) -> None:
        assert self.store is not None
        try:
            call(self.store)
        except StoreError as e:
            raise exceptions.OptionsError(str(e)) from e

    def _prepare(self, store: CassetteStore, name: str) -> None:
        opts = ctx.options
        mode, source = opts.pseudowa_mode, opts.pseudowa_source
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
            store.add_history(name, "record", self._history_arguments())
        except CassetteExists as e:
            raise exceptions.OptionsError(
                f"cassette {name} exists; use --mode append or overwrite"
            ) from e
        except StoreError as e:
            raise exceptions.OptionsError(str(e)) from e

    def _history_arguments(self) -> dict[str, Any]:
        """The recording's settings, minus anything secret."""
        opts = ctx.options
        return {
            "mode": opts.pseudowa_mode,
            "source": opts.pseudowa_source,
            "pseudonymize": bool(opts.pseudowa_pseudonymize),
            "webhook_upstream": redact.scrub_url(opts.pseudowa_webhook_upstream, self._secrets()),
            "graph_upstreams": list(opts.pseudowa_graph_upstreams),
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
            self.store.close()
        self.store, self.cassette, self._opened = None, None, None

    def _secrets(self) -> list[str]:
        opts = ctx.options
        return [opts.pseudowa_app_secret, *opts.pseudowa_secrets, *self._learned_secrets]

    @property
    def recording(self) -> bool:
        return self.store is not None and self.failed is None

    # -- hooks ------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._kind(flow) is not None:
            flow.request.stream = False  # bodies are recorded whole

    def request(self, flow: http.HTTPFlow) -> None:
        if self._kind(flow) is not None and self.failed is not None and flow.killable:
            flow.kill()  # recording has stopped: let nothing through unrecorded

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self._kind(flow) is not None and flow.response is not None:
            flow.response.stream = False

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
        async with self._lock:
            if self.store is not None:
                if self.failed is None and self.active_flows:
                    try:
                        for f, kind in list(self.active_flows.values()):
                            await self._write_and_report(
                                self._prepare_write(f, kind, incomplete=True)
                            )
                    except Exception as e:
                        self._fail(e, None)
                self.active_flows.clear()
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
        body, _ = _body(response)
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
        async with self._lock:
            # Checked under the lock: a write queued behind a failed one must not go on.
            if self.failed is not None:
                if flow.killable:
                    flow.kill()
                return
            if self.store is None:
                logger.warning(
                    "not recorded, the recording has ended: %s %s",
                    flow.request.method,
                    redact.scrub_url(_flow_url(flow), self._secrets()),
                )
                return
            try:
                pending = self._prepare_write(flow, kind, original_response=original_response)
            except Exception as e:
                # A scrubbing bug: storing the exchange unscrubbed is no option either.
                logger.exception("recording stopped: could not prepare an exchange")
                self._fail(e, flow, logged=True)
                return
            try:
                seq = await self._write_and_report(pending)
            except Exception as e:
                self._fail(e, flow)
                return
        flow.metadata[_RECORDED] = seq

    async def _write_and_report(self, pending: _Pending) -> int:
        exchange = await asyncio.to_thread(self._write, pending)
        self.counts[pending.kind] += 1
        if pending.media is not None:
            self.media_bytes += len(pending.media)
        if self.on_recorded is not None:
            try:
                self.on_recorded(pending.kind, exchange)
            except Exception:
                logger.exception("on_recorded callback failed")
        return exchange.seq

    def _fail(self, e: BaseException, flow: http.HTTPFlow | None, *, logged: bool = False) -> None:
        # Like mitmproxy's Save addon: losing recordings silently is worse than
        # stopping. The flow that could not be written is not let through either.
        if self.failed is None:
            self.failed = e
            if not logged:
                logger.error("recording stopped: could not write to the cassette store: %s", e)
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
        req_headers = list(request.headers.items(multi=True))
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
        req_body, req_decoded = _body(request)
        req_body = self._clean(req_body, secrets)

        status: int | None = None
        resp_headers: list[tuple[str, str]] = []
        resp_body = b""
        if response is not None:
            status = response.status_code
            resp_headers = redact.scrub_headers(response.headers.items(multi=True), secrets)
            raw, resp_decoded = _body(response)
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
                pending.events = event_data(found)
                pending.phone_number_ids = frozenset(
                    e.phone_number_id for e in found if e.phone_number_id
                )
        if kind == Kind.GRAPH.value:
            pending.graph_version = matching.graph_version(url)
            segments = matching.normalize_path(url).strip("/").split("/")
            if len(segments) == 2 and segments[1] in ("messages", "media") and segments[0].isdigit():
                pending.phone_number_ids = frozenset({segments[0]})
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
            url=redact.scrub_url(url, secrets),
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

    def _clean(self, body: bytes, secrets: list[str]) -> bytes:
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
        found += [v for k, v in flow.request.query.items(multi=True) if k in redact.SECRET_PARAMS]
        self._learned_secrets.update(v for v in found if v and len(v) >= _MIN_LEARNED)

    # -- the store (worker thread, one write at a time) -------------------------------

    def _write(self, pending: _Pending) -> Exchange:
        store, name = self.store, self.cassette
        if store is None or name is None:
            raise StoreError("the cassette store is closed")
        exchange = pending.exchange
        if pending.media is not None:
            if pending.media_id is not None:
                exchange = self._store_media(store, name, pending)
            else:
                # No media id to link the blob to: keep the bytes with the exchange.
                exchange = dataclasses.replace(
                    exchange,
                    response_body=pending.media,
                    annotations={**exchange.annotations, "sha256": "unknown"},
                )
        seq = store.append(name, exchange, pending.events)
        self._update_cassette(store, name, pending)
        return dataclasses.replace(exchange, seq=seq)

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

    def _update_cassette(self, store: CassetteStore, name: str, pending: _Pending) -> None:
        new_ids = pending.phone_number_ids - self._phone_number_ids
        version = pending.graph_version if pending.graph_version != self._graph_version else None
        if not new_ids and version is None:
            return
        info = store.get_cassette(name)
        ids = set(info.phone_number_ids) | self._phone_number_ids | pending.phone_number_ids
        store.update_cassette(name, phone_number_ids=sorted(ids), graph_api_version=version)
        self._phone_number_ids = ids
        if version is not None:
            self._graph_version = version


def _flow_url(flow: http.HTTPFlow) -> str:
    """The URL the flow went to: the target's in reverse mode, else as the client named it."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return flow.request.url
    return flow.request.pretty_url


def _body(message: http.Message) -> tuple[bytes, bool]:
    """The body with its content-encoding undone, and whether it was undone."""
    raw = message.raw_content
    if raw is None:
        return b"", False
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
