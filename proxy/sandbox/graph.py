"""The fake Graph API: an aiohttp server answering sends like Meta, and routing media.

Sends (`POST .../messages`) are answered from the cassette when a recorded answer for
the same request shape remains (each used once, in order), otherwise synthesized from
the contract layer (`contract/answers.py`). Media look-ups, downloads, uploads and
deletes are `media.MediaRoutes`' job. Every request, errors included, goes through
`FakeGraph._serve`: Meta's headers and error envelope, and the run's journal with its
secrets removed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import secrets
import time
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import media_url
from pseudowa.proxy.contract.answers import api_version
from pseudowa.proxy.contract.answers import bearer_token
from pseudowa.proxy.contract.answers import describe_nearest
from pseudowa.proxy.contract.answers import http_error
from pseudowa.proxy.contract.answers import journal_headers
from pseudowa.proxy.contract.answers import redact_body
from pseudowa.proxy.contract.answers import redact_url
from pseudowa.proxy.contract.answers import send_answer_body
from pseudowa.proxy.contract.answers import unmatched_error
from pseudowa.proxy.contract.answers import usage_header
from pseudowa.proxy.contract.answers import wamid_of
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import bad_token
from pseudowa.proxy.contract.errors import invalid_parameter
from pseudowa.proxy.contract.errors import unknown_object
from pseudowa.proxy.contract.ids import new_fbtrace_id
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import error_for_unknown_media
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.proxy.sandbox.media import MediaRoutes
from pseudowa.proxy.sandbox.media import RunMedia
from pseudowa.proxy.sandbox.recordings import Recordings
from pseudowa.proxy.sandbox.recordings import read_recordings
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import header_value
from pseudowa.storage.store import CassetteStore

logger = logging.getLogger(__name__)

VERSION_PATTERN = r"v\d+(?:\.\d+)?"
# Request bodies up to this size are kept in the journal; bigger multipart uploads are
# streamed and journaled as b"" with their size.
JOURNAL_BODY_MAX = 1 << 20
# JSON sends sent without Content-Length are read whole; Meta's own bodies are tiny.
CLIENT_MAX_SIZE = 8 << 20
# One secret per process: URLs handed out by one fake stay valid for another fake of
# the same process (e.g. a restarted server in a test), never across processes.
_PROCESS_URL_SECRET = secrets.token_bytes(32)
# Addresses meaning "every interface", and where a client on this machine reaches them.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class GraphConfig:
    """How the fake Graph API behaves; defaults give a faithful, fault-free sandbox."""

    access_token: str = "pseudowa-access-token"  # Bearer token the bot must send
    url_secret: bytes = _PROCESS_URL_SECRET  # signs media download URLs
    media_ttl_s: float = media_url.DEFAULT_TTL_S  # 0 => URLs expire immediately
    strict: bool = False  # a send without a recorded answer is an error
    fail_rate: float = 0.0  # fraction of sends answered with an injected error
    fail_codes: tuple[int, ...] = (131000,)  # chosen at random among these
    latency_ms: float = 0.0  # added before answering any route
    jitter_ms: float = 0.0  # uniform extra delay in [0, jitter_ms]
    seed: int | None = None  # RNG seed for faults and jitter, for reproducible runs
    account: BusinessAccount = field(default_factory=BusinessAccount)
    volatile: tuple[str, ...] = matching.DEFAULT_VOLATILE
    public_base_url: str | None = None  # base of media URLs; default: this server


class SendListener(Protocol):
    """Told about every accepted send and read receipt (e.g. to emit status webhooks)."""

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        """Called after a send was answered 200; `recorded` when the answer was replayed."""

    def on_mark_read(self, mark: MarkRead) -> None:
        """Called after a read receipt was accepted."""


@dataclass(frozen=True)
class UnmatchedSend:
    """A send that found no remaining recorded answer, with the closest recorded ones."""

    shape: RequestShape
    nearest: list[tuple[RequestShape, list[str]]]
    at: float

    def __str__(self) -> str:
        return f"no recording matched {self.shape.describe()}; {describe_nearest(self.nearest)}"


@dataclass(slots=True)
class _RequestState:
    """What `_serve` and the handlers share about one request (`media.RequestNotes`)."""

    started_at: float
    trace_id: str
    request_id: str
    version: str
    kind: str = Kind.GRAPH.value
    raw_body: bytes | None = None  # None: streamed, not kept
    messages_endpoint: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


_STATE = web.RequestKey("pseudowa_graph_state", _RequestState)


class _OneLineLog(logging.Logger):
    """aiohttp's server log for one fake: a request its HTTP parser rejects, or whose body
    cannot be decoded, logs one line rather than a traceback per request."""

    def __init__(self) -> None:
        super().__init__(f"{__name__}.http")
        # Not registered with logging's manager: records go up to this module's logger.
        self.parent = logger

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        """Log `msg` with the exception's one-line summary when it is the client's mistake
        (bad framing, undecodable body); with its traceback otherwise (a bug)."""
        if _clients_mistake(exc_info):
            self.warning("%s: %s", _text(msg, args), _one_line(exc_info), **kwargs)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        """As aiohttp logs non-HTTP bytes on a fresh connection: one line too."""
        if _clients_mistake(exc_info):
            super().debug("%s: %s", _text(msg, args), _one_line(exc_info), **kwargs)
        else:
            super().debug(msg, *args, exc_info=exc_info, **kwargs)


def _clients_mistake(exc_info: object) -> bool:
    return isinstance(exc_info, HttpProcessingError | RequestPayloadError | ConnectionError)


def _text(msg: object, args: tuple[object, ...]) -> str:
    return str(msg) % args if args else str(msg)


def _one_line(exc: BaseException) -> str:
    """An exception and its causes as one line, e.g. `RequestPayloadError: ... (zlib.error: ...)`."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 4:
        text = " ".join(str(seen).split())
        parts.append(f"{type(seen).__name__}: {text}" if text else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


class _AnyTarget(web.DynamicResource):
    """A resource taking every request target, `*` (of `OPTIONS *`) included, which no
    path pattern matches: registered last, it receives what no other route takes."""

    def __init__(self) -> None:
        super().__init__("/{path:.*}")

    def _match(self, path: str) -> dict[str, str] | None:
        return {"path": path}


class FakeGraph:
    """An aiohttp app imitating graph.facebook.com and lookaside.fbsbx.com for one bot.

    `journal` and `listener` are read per request, so either may be swapped while the
    server runs; `use_cassette` switches the cassette served.
    """

    def __init__(
        self,
        config: GraphConfig | None = None,
        store: CassetteStore | None = None,
        cassette: str | None = None,
        journal: Journal | None = None,
        listener: SendListener | None = None,
    ) -> None:
        if cassette is not None and store is None:
            raise ValueError("a cassette needs a store to be read from")
        self.config = config or GraphConfig()
        self.store = store
        self.cassette = cassette
        self.journal = journal
        self.listener = listener
        # Accepted sends, flat: raw body, wamid, recorded, at; 4 entries per send (`sends`).
        self.unmatched: list[UnmatchedSend] = []
        self.media = MediaRoutes(self)
        self.base_url: str | None = None  # set by start()
        self.local_url: str | None = None  # the same, on loopback when bound to every interface
        self.in_flight = 0  # requests being served now
        self.last_activity = time.monotonic()  # when a request last started or ended
        self._recordings = Recordings()
        self._phone_ids: set[str] = {self.config.account.phone_number_id}
        self._loaded = False
        self._cassette_switches = 0  # a cassette read finishing late must not win
        seed = self.config.seed
        # Separate streams: how many requests drew jitter must not change which sends fail.
        self._fault_rng = random.Random(seed)
        self._jitter_rng = random.Random(None if seed is None else f"{seed}-jitter")
        self._runner: web.AppRunner | None = None
        self.app = self.make_app()

    @property
    def recordings(self) -> Recordings:
        """The served cassette's recorded send answers, and which were replayed."""
        return self._recordings

    @property
    def uploads(self) -> dict[str, RunMedia]:
        """The media the bot uploaded in this run, by media id (deleted ones are gone)."""
        uploads: dict[str, RunMedia] = self.media.uploads
        return uploads

    async def add_media(self, data: bytes, mime_type: str) -> RunMedia:
        """Serve `data` under a fresh media id, as media a WhatsApp user sent the bot.

        `GET /{media_id}` and its signed download URL then serve it, like a cassette's
        media; the bytes go to the blob store (the graph's store, else the journal's)
        or, without one, stay in memory. Returns the media (id, hex sha256, size, ...).
        """
        return await self.media.add(data, mime_type)

    # -- lifecycle ---------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application: routes, each served through `_serve`, cassette loading."""
        # No aiohttp middleware: with one, aiohttp adds one of its own and builds and runs
        # the chain for every request, ~3% of the send benchmark's throughput. Each handler
        # is wrapped in `_serve` instead, and a last catch-all route takes what aiohttp's
        # router would answer 404/405 by itself, so those still get Meta's envelope and a
        # journal entry.
        app = web.Application(client_max_size=CLIENT_MAX_SIZE)
        app.on_startup.append(self._on_startup)
        r = app.router
        route = self._served
        media = self.media
        # The seed's simple contract (architecture.md) next to the Graph-shaped routes.
        r.add_get("/media/download/{media_id}", route(media.download_by_id))
        r.add_get("/media/{media_id}", route(media.info))
        r.add_post("/messages", route(self._send))
        r.add_get(media_url.DOWNLOAD_PATH, route(media.download))
        r.add_get(media_url.DOWNLOAD_PATH.rstrip("/"), route(media.download))
        for prefix in (f"/{{version:{VERSION_PATTERN}}}", ""):
            r.add_post(prefix + "/{phone_number_id}/messages", route(self._send))
            r.add_post(prefix + "/{phone_number_id}/media", route(media.upload))
            r.add_get(prefix + "/{media_id}", route(media.info))
            r.add_delete(prefix + "/{media_id}", route(media.delete))
        r.register_resource(fallback := _AnyTarget())
        fallback.add_route("*", route(self._no_route))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); returns the base URL."""
        runner = web.AppRunner(self.app, logger=_OneLineLog())
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{bound_port}"
        # Every interface is no address to reach it at: a local client uses loopback.
        local = _LOOPBACK.get(host, shown)
        self.local_url = f"http://{local}:{bound_port}" if local != shown else None
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (the journal is the caller's to close)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_startup(self, _app: web.Application) -> None:
        await self.load()

    async def load(self) -> None:
        """Read the cassette's recorded send answers and phone ids (once; start() does it)."""
        if self._loaded:
            return
        self._loaded = True
        await self._switch(self.store, self.cassette)

    async def use_cassette(self, store: CassetteStore | None, name: str | None) -> None:
        """Serve cassette `name` of `store` from now on (None: no cassette), even while running.

        Its recorded send answers, phone number ids and media links replace the previous
        cassette's; `unmatched` and the deleted media start afresh. This run's uploads and
        added media stay. `store` without a name still keeps uploaded blobs.
        """
        if name is not None and store is None:
            raise ValueError("a cassette needs a store to be read from")
        self._loaded = True
        await self._switch(store, name)
        self.unmatched = []
        self.media.reset()

    async def _switch(self, store: CassetteStore | None, name: str | None) -> None:
        self._cassette_switches += 1
        switch = self._cassette_switches
        found = Recordings()
        if store is not None and name is not None:
            volatile = self.config.volatile
            found = await asyncio.to_thread(read_recordings, store, name, volatile)
        if switch != self._cassette_switches:
            return  # another switch started meanwhile; it decides what is served
        # Swapped whole, between two requests: none is served from a half-read cassette.
        self.store, self.cassette = store, name
        self._recordings = found
        self._phone_ids = {self.config.account.phone_number_id, *found.phone_ids}

    # -- serving -----------------------------------------------------------------------

    def _served(self, handler: Handler) -> Handler:
        """`handler` run through `_serve`."""

        async def serve(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, handler)

        return serve

    async def _no_route(self, request: web.Request) -> web.StreamResponse:
        """What aiohttp's router answers when no route takes a request: 405 when some
        route has this path (for other methods), else 404."""
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if resource is not request.match_info.route.resource:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Delay, run the handler, turn every failure into Meta's envelope, journal it."""
        # Activity as two attribute writes at each end (no callback, no await): this runs
        # for every request, and a sandbox polls it to tell when the bot went quiet.
        self.in_flight += 1
        self.last_activity = time.monotonic()
        try:
            state = _RequestState(
                started_at=time.time(),
                trace_id=new_fbtrace_id(),
                request_id=new_fbtrace_id(),
                version=api_version(request.path),
            )
            request[_STATE] = state
            response: web.StreamResponse
            try:
                # (Inline checks rather than helper coroutines: this runs for every request.)
                if self.config.latency_ms > 0 or self.config.jitter_ms > 0:
                    await self._delay()
                # Small bodies are read up front (journal and handlers share them); big ones
                # stream and stay None.
                if not request.body_exists:
                    state.raw_body = b""
                elif (length := request.content_length) is not None and length <= JOURNAL_BODY_MAX:
                    state.raw_body = await request.read()
                response = await handler(request)
            except GraphError as e:
                response = self._error(e, state)
            except RequestPayloadError as e:
                # aiohttp could not decode the body (a Content-Encoding it is not in, bad
                # chunked framing): the bot's mistake, as at Meta a 400.
                detail = _one_line(e.__cause__ or e)
                err = invalid_parameter(f"The request body could not be read: {detail}")
                response = self._error(err, state)
                # The rest of the body is unreadable too: close after answering, and stop
                # aiohttp from draining it afterwards (which would log the error again).
                response.force_close()
                request.content.feed_eof()
            except web.HTTPException as e:
                err = http_error(e.status, e.reason, request.method, request.path)
                response = self._error(err, state)
            except ConnectionError as e:
                # The bot went away mid-request (e.g. mid-body): one line, no traceback; the
                # answer reaches nobody, the journal still shows the request.
                logger.debug("client left during %s %s: %r", request.method, request.path, e)
                err = invalid_parameter("The connection closed before the request body ended.")
                response = self._error(err, state)
            except Exception as e:
                # A bug of ours must still answer in Meta's shape, never aiohttp's HTML 500.
                logger.exception("fake Graph API failed on %s %s", request.method, request.path)
                err = GraphError(1, f"Internal error: {type(e).__name__}", http_status=500)
                response = self._error(err, state)
            if not response.prepared:
                response.headers.update(self._headers(state))
            journal = self.journal  # read per request: a sandbox swaps it between runs
            if journal is not None:
                self._record(journal, request, state, response)
            return response
        finally:
            self.in_flight -= 1
            self.last_activity = time.monotonic()

    async def _delay(self) -> None:
        ms = self.config.latency_ms
        if self.config.jitter_ms > 0:
            ms += self._jitter_rng.uniform(0, self.config.jitter_ms)
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    def _headers(self, state: _RequestState) -> dict[str, str]:
        headers = {
            "x-fb-trace-id": state.trace_id,
            "x-fb-request-id": state.request_id,
            "facebook-api-version": state.version,
        }
        if state.messages_endpoint:
            headers["x-business-use-case-usage"] = usage_header(self.config.account.waba_id)
        return headers

    @staticmethod
    def _error(err: GraphError, state: _RequestState) -> web.Response:
        state.annotations["graph_error"] = str(err.code)
        return web.json_response(err.envelope(state.trace_id), status=err.http_status)

    @staticmethod
    def _record(
        journal: Journal, request: web.Request, state: _RequestState, response: web.StreamResponse
    ) -> None:
        annotations = dict(state.annotations)
        body = state.raw_body
        if body is None:
            length = request.content_length
            annotations["request_body_size"] = str(length) if length is not None else "unknown"
            body = b""
        response_body = b""
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            response_body = redact_body(response.body)
        journal.record(
            Exchange(
                kind=state.kind,
                method=request.method,
                url=redact_url(request.path_qs),
                request_headers=journal_headers(request.headers),
                request_body=body,
                response_status=response.status,
                response_headers=list(response.headers.items()),
                response_body=response_body,
                started_at=state.started_at,
                finished_at=time.time(),
                annotations=annotations,
            )
        )

    # -- what the media routes share (media.MediaHost) ---------------------------------------

    def authorize(self, request: web.Request) -> None:
        """Raise Meta's 190 unless the request carries the configured access token."""
        token = bearer_token(
            request.headers.get("Authorization"), request.query.get("access_token")
        )
        if token is None:
            raise bad_token("An access token is required to request this resource.")
        # "surrogatepass": aiohttp keeps a header's non-UTF-8 bytes as lone surrogates,
        # which a plain encode() refuses; the same encoding on both sides keeps it exact.
        given = token.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(
            given, self.config.access_token.encode("utf-8", "surrogatepass")
        ):
            raise bad_token("Invalid OAuth access token - Cannot parse access token")

    def phone_number_id(self, request: web.Request) -> str:
        """The request's business number (the account's when the path names none)."""
        default: str = self.config.account.phone_number_id
        phone_id = request.match_info.get("phone_number_id", default)
        if phone_id not in self._phone_ids:
            raise unknown_object(phone_id)
        return phone_id

    def serves_number(self, phone_id: str) -> bool:
        """True for the account's number and the served cassette's numbers."""
        return phone_id in self._phone_ids

    def media_base_url(self, request: web.Request) -> str:
        """Where download URLs point: `public_base_url`, this server, or the bot's host."""
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        if self.base_url is not None and self._runner is not None and self.local_url is None:
            return self.base_url
        # Not started by us, or bound to every interface: the address the bot used.
        return f"{request.scheme}://{request.host}"

    @staticmethod
    def notes(request: web.Request) -> _RequestState:
        """The state `_serve` keeps about `request`."""
        return request[_STATE]

    def answer_headers(self, request: web.Request) -> dict[str, str]:
        """Meta's headers for the answer to `request` (trace ids, version, usage)."""
        return self._headers(request[_STATE])

    # -- sends -------------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.StreamResponse:
        state = request[_STATE]
        state.messages_endpoint = True
        self.authorize(request)
        phone_id = self.phone_number_id(request)
        raw = state.raw_body
        if raw is None:
            raw = state.raw_body = await request.read()
        parsed = parse_send(raw)
        if isinstance(parsed, MarkRead):
            if self.listener is not None:
                self._notify(lambda listener: listener.on_mark_read(parsed))
            return web.json_response({"success": True})
        send = parsed
        if self.config.fail_rate > 0 and self._fault_rng.random() < self.config.fail_rate:
            code = self._fault_rng.choice(self.config.fail_codes)
            state.annotations["injected_fault"] = str(code)
            raise GraphError(code)
        # Recordings (and unmatched sends to report) only exist with a cassette: without
        # one, no request shape is built (normalised body and key, per send).
        if self.cassette is not None:
            recorded = self._replay_recorded(state, phone_id, raw, send)
            if recorded is not None:
                return recorded
        if send.media_id is not None and await self.media.find(send.media_id) is None:
            raise error_for_unknown_media(send.media_id)
        wamid = new_wamid(send.wa_id)
        self._accept(send, wamid, recorded=False)
        return web.Response(
            body=send_answer_body(send, wamid), content_type="application/json", charset="utf-8"
        )

    def _replay_recorded(
        self, state: _RequestState, phone_id: str, raw: bytes, send: SendRequest
    ) -> web.Response | None:
        """The next recorded answer to this send's shape; None when none is left (noted in
        `unmatched`, or an error in strict mode)."""
        # Match on the canonical path so `POST /messages` finds recordings of the Graph route;
        # `send.body` is the request's JSON, already parsed by parse_send.
        path = f"/{phone_id}/messages"
        shape = RequestShape.of_parsed("POST", path, send.body, self.config.volatile)
        # Strict mode answers only the same request shape; otherwise by meaning too.
        taken = self._recordings.take(shape, send, by_meaning=not self.config.strict)
        if taken is not None:
            answer, how = taken
            state.annotations["replayed_seq"] = str(answer.seq)
            if how != "shape":
                state.annotations["replayed_by"] = how
            content_type = header_value(answer.headers, "Content-Type") or "application/json"
            wamid = wamid_of(answer.body)
            if answer.status == 200 and wamid is not None:
                self._accept(send, wamid, recorded=True)
            return web.Response(
                status=answer.status, body=answer.body, headers={"Content-Type": content_type}
            )
        near = matching.nearest(shape, self._recordings.shapes)
        self.unmatched.append(UnmatchedSend(shape, near, time.time()))
        if self.config.strict:
            raise unmatched_error(shape, near)
        return None

    def _accept(self, send: SendRequest, wamid: str, *, recorded: bool) -> None:
        if self.listener is not None:  # (no closure to build when nobody listens)
            self._notify(lambda listener: listener.on_send(send, wamid, recorded))

    def _notify(self, call: Callable[[SendListener], None]) -> None:
        listener = self.listener
        if listener is None:
            return
        try:
            call(listener)
        except Exception:
            # The send is already accepted: failing it now would make the bot retry
            # and send twice, so a listener bug is logged rather than answered.
            logger.exception("send listener failed")
