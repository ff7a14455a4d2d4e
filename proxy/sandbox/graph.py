"""The fake Graph API: sends, media look-ups, downloads, uploads and deletes, answered like Meta.

Sends (`POST .../messages`) are answered from the cassette when a recorded answer for
the same request shape remains (each used once, in order), otherwise synthesized from
the contract layer. Media come from the cassette's media links or from this run's
uploads; download URLs are signed and expire like lookaside.fbsbx.com's. Every
request, errors included, goes to the run's journal with its secrets removed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import IO
from typing import Any
from typing import BinaryIO
from typing import Protocol
from typing import cast

from aiohttp import BodyPartReader
from aiohttp import MultipartReader
from aiohttp import StreamReader
from aiohttp import hdrs
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError

from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Headers
from pseudowa.storage.records import Kind
from pseudowa.storage.store import CassetteStore

from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import media_url
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import bad_token
from pseudowa.proxy.contract.errors import bad_value
from pseudowa.proxy.contract.errors import invalid_parameter
from pseudowa.proxy.contract.errors import missing_parameter
from pseudowa.proxy.contract.errors import unknown_object
from pseudowa.proxy.contract.ids import new_fbtrace_id
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import error_for_unknown_media
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.sandbox.journal import Journal

logger = logging.getLogger(__name__)

# Echoed in `facebook-api-version` when the path names no version: Meta then uses the
# app's default version; ours is the one Meta's published OpenAPI spec describes.
DEFAULT_API_VERSION = "v23.0"
VERSION_PATTERN = r"v\d+(?:\.\d+)?"
# Request bodies up to this size are kept in the journal; bigger multipart uploads are
# streamed and journaled as b"" with their size.
JOURNAL_BODY_MAX = 1 << 20
# JSON sends sent without Content-Length are read whole; Meta's own bodies are tiny.
CLIENT_MAX_SIZE = 8 << 20
CHUNK_SIZE = 1 << 20
# Uploads stay in memory up to this size, then spill to a temporary file.
SPOOL_MAX = 1 << 20
FIELD_MAX = 64 << 10
REDACTED = "REDACTED"
# One secret per process: URLs handed out by one fake stay valid for another fake of
# the same process (e.g. a restarted server in a test), never across processes.
_PROCESS_URL_SECRET = secrets.token_bytes(32)
_SECRET_QUERY = re.compile(r"([?&](?:hash|access_token)=)[^&#\s\"']*")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")

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
class RecordedAnswer:
    """A recorded response to a send, replayed verbatim once."""

    status: int
    headers: Headers
    body: bytes
    seq: int  # the interaction's position in its cassette


@dataclass(frozen=True)
class AcceptedSend:
    """A send answered 200, in the order the bot made them (input of the replay check)."""

    send: SendRequest
    wamid: str
    recorded: bool
    at: float  # seconds since the epoch


@dataclass(frozen=True)
class UnmatchedSend:
    """A send that found no remaining recorded answer, with the closest recorded ones."""

    shape: RequestShape
    nearest: list[tuple[RequestShape, list[str]]]
    at: float

    def __str__(self) -> str:
        return f"no recording matched {self.shape.describe()}; {describe_nearest(self.nearest)}"


@dataclass(frozen=True)
class RunMedia:
    """A media id this run can serve: a cassette link or an upload."""

    media_id: str
    sha256: str  # lowercase hex
    mime_type: str
    size: int
    data: bytes | None = None  # uploads made without any store keep their bytes here
    phone_number_id: str | None = None  # the number an upload was made through


@dataclass(slots=True)
class _RequestState:
    """What `_serve` and the handlers share about one request."""

    started_at: float
    trace_id: str
    request_id: str
    version: str
    kind: str = Kind.GRAPH.value
    raw_body: bytes | None = None  # None: streamed, not kept
    messages_endpoint: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


_STATE = web.RequestKey("pseudowa_graph_state", _RequestState)


# -- pure helpers ------------------------------------------------------------------------


def redact_url(path_qs: str) -> str:
    """A path+query with the download signature and any access token replaced by REDACTED."""
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", path_qs)


def redact_body(body: bytes) -> bytes:
    """A response body with the signatures of the download URLs it holds redacted."""
    if b"hash=" not in body and b"access_token=" not in body:
        return body
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", body.decode("utf-8", "replace")).encode()


def journal_headers(headers: Mapping[str, str]) -> Headers:
    """Request headers as the journal keeps them: everything but the Bearer token."""
    return [(k, v) for k, v in headers.items() if k.lower() != "authorization"]


def bearer_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The access token of a request: `Authorization: Bearer …` or Graph's `access_token=`."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return query.get("access_token") or None


@functools.lru_cache(maxsize=16)
def usage_header(waba_id: str) -> str:
    """`x-business-use-case-usage`: a JSON string keyed by WABA id (contract §6.1).

    Cached: every answer of the messages endpoint carries it, and it never changes.
    """
    usage = {
        waba_id: [
            {
                "type": "whatsapp",
                "call_count": 1,
                "total_cputime": 1,
                "total_time": 1,
                "estimated_time_to_regain_access": 0,
            }
        ]
    }
    return json.dumps(usage, separators=(",", ":"))


def send_answer(send: SendRequest, wamid: str) -> dict[str, Any]:
    """The synthesized 200 body of a send (OpenAPI `MessageResponsePayload`)."""
    message: dict[str, Any] = {"id": wamid}
    if send.type == "template":
        # Meta reports the pacing state of template sends; plain sends omit it.
        message["message_status"] = "accepted"
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": send.to, "wa_id": send.wa_id}],
        "messages": [message],
    }


# send_answer() serialised as compact JSON by hand: json.dumps of the dict, then
# encoding it, cost as much as the rest of the synthesized answer.
_SEND_ANSWER = (
    '{"messaging_product":"whatsapp","contacts":[{"input":%s,"wa_id":%s}],'
    '"messages":[{"id":%s%s}]}'
)
_json_string = json.encoder.encode_basestring_ascii  # json.dumps of one str, in C


def send_answer_body(send: SendRequest, wamid: str) -> bytes:
    """`send_answer(send, wamid)` as compact JSON bytes (what the fake answers)."""
    status = ',"message_status":"accepted"' if send.type == "template" else ""
    to, wa_id, id_ = _json_string(send.to), _json_string(send.wa_id), _json_string(wamid)
    return (_SEND_ANSWER % (to, wa_id, id_, status)).encode()


@functools.lru_cache(maxsize=256)
def api_version(path: str) -> str:
    """`facebook-api-version` for a request path (cached: a bot uses a few paths, often)."""
    return matching.graph_version(path) or DEFAULT_API_VERSION


def media_answer(media: RunMedia, url: str) -> dict[str, Any]:
    """The body of `GET /{media_id}`: sha256 in hex and file_size as a string, like Meta."""
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": media.mime_type,
        "sha256": media.sha256,
        "file_size": str(media.size),
        "id": media.media_id,
    }


def wamid_of(body: bytes) -> str | None:
    """The first `messages[].id` of a send answer, if any."""
    parsed = matching.parse_json(body)
    if isinstance(parsed, dict):
        messages = parsed.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            return wamid if isinstance(wamid, str) else None
    return None


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of header `name` (case-insensitive) in a header list."""
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), None)


def is_send_body(body: bytes) -> bool:
    """True unless the body is a read receipt (those are not answered from recordings)."""
    parsed = matching.parse_json(body)
    return not (isinstance(parsed, dict) and "status" in parsed and "type" not in parsed)


def describe_nearest(near: list[tuple[RequestShape, list[str]]]) -> str:
    """The closest recorded requests, numbered, each with the fields that differ."""
    if not near:
        return "the cassette has no recorded sends"
    lines = [
        f"[{i}] {cand.describe()} differs in: "
        + (", ".join(fields) or "nothing (its recorded answers were all used)")
        for i, (cand, fields) in enumerate(near, 1)
    ]
    return "nearest recorded requests: " + "; ".join(lines)


def unmatched_error(shape: RequestShape, near: list[tuple[RequestShape, list[str]]]) -> GraphError:
    """Strict mode's answer to a send no recording covers, naming the closest recordings."""
    message = f"no recording matched {shape.method} {shape.path}"
    return GraphError(100, describe_nearest(near), message=message)


def _http_error(request: web.Request, exc: web.HTTPException) -> GraphError:
    """A router or body-size error in Meta's envelope (never aiohttp's HTML/text page)."""
    if exc.status == 404:
        message = f"Unknown path components: {request.path}"
        return GraphError(100, message, message=message)
    if exc.status == 405:
        message = f"Unsupported {request.method.lower()} request."
        return GraphError(100, message, message=message, http_status=400)
    return GraphError(100, exc.reason, message=f"(#100) {exc.reason}", http_status=exc.status)


def _not_downloadable(details: str) -> GraphError:
    """lookaside answers 404 to expired, forged or unknown download URLs."""
    return GraphError(100, details, http_status=404, type="GraphMethodException")


def _bytes_reader(raw: bytes) -> StreamReader:
    """A finished stream holding `raw`, so one multipart parser serves bodies read whole."""
    loop = asyncio.get_running_loop()
    # A limit above the body's size means the reader never asks the dummy protocol
    # to pause reading.
    stream = StreamReader(BaseProtocol(loop), limit=max(1 << 16, len(raw) + 1), loop=loop)
    stream.feed_data(raw)
    stream.feed_eof()
    return stream


async def _read_field(part: BodyPartReader) -> str:
    """A form field's text, bounded so a stray huge field cannot fill memory."""
    data = bytearray()
    while chunk := await part.read_chunk(FIELD_MAX):
        if len(data) < FIELD_MAX:
            data += chunk[: FIELD_MAX - len(data)]
    return data.decode(part.get_charset("utf-8"), "replace")


@dataclass
class _Spooled:
    """An uploaded file part: its bytes (memory, then disk), size, sha256, part type."""

    file: IO[bytes]
    size: int
    sha256: str
    content_type: str | None


async def _spool(part: BodyPartReader) -> _Spooled:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX)
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := await part.read_chunk(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if size > SPOOL_MAX:
                # Past the threshold the spool writes to disk: keep that off the loop.
                await asyncio.to_thread(spool.write, chunk)
            else:
                spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return _Spooled(spool, size, digest.hexdigest(), part.headers.get(hdrs.CONTENT_TYPE))


class _AnyTarget(web.DynamicResource):
    """A resource taking every request target, `*` (of `OPTIONS *`) included, which no
    path pattern matches: registered last, it receives what no other route takes."""

    def __init__(self) -> None:
        super().__init__("/{path:.*}")

    def _match(self, path: str) -> dict[str, str] | None:
        return {"path": path}


# -- the server --------------------------------------------------------------------------


class FakeGraph:
    """An aiohttp app imitating graph.facebook.com and lookaside.fbsbx.com for one bot."""

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
        self._accepted: list[Any] = []
        self.unmatched: list[UnmatchedSend] = []
        self.uploads: dict[str, RunMedia] = {}
        self.base_url: str | None = None  # set by start()
        self._recorded: dict[str, deque[RecordedAnswer]] = {}
        self._recorded_shapes: dict[str, RequestShape] = {}
        self._phone_ids: set[str] = {self.config.account.phone_number_id}
        self._deleted: set[str] = set()
        self._loaded = False
        seed = self.config.seed
        # Separate streams: how many requests drew jitter must not change which sends fail.
        self._fault_rng = random.Random(seed)
        self._jitter_rng = random.Random(None if seed is None else f"{seed}-jitter")
        self._runner: web.AppRunner | None = None
        self.app = self.make_app()

    @property
    def sends(self) -> list[AcceptedSend]:
        """The sends answered 200 so far, in the order the bot made them.

        Kept as 4 flat list entries per send (raw body, wamid, recorded, at) and parsed
        again here, on demand. Holding an AcceptedSend with its parsed body for the whole
        run left ~7 container objects per send for every full garbage collection to walk
        (203 ms after 33k sends); bytes, str, bool and float are no containers, so a send
        leaves nothing behind for the collector, not even a trigger for a collection.
        """
        flat = self._accepted
        sends = []
        for i in range(0, len(flat), 4):
            raw, wamid, recorded, at = flat[i : i + 4]
            sends.append(AcceptedSend(cast(SendRequest, parse_send(raw)), wamid, recorded, at))
        return sends

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
        # The seed's simple contract (architecture.md) next to the Graph-shaped routes.
        r.add_get("/media/download/{media_id}", route(self._download_by_id))
        r.add_get("/media/{media_id}", route(self._media_info))
        r.add_post("/messages", route(self._send))
        r.add_get(media_url.DOWNLOAD_PATH, route(self._download))
        r.add_get(media_url.DOWNLOAD_PATH.rstrip("/"), route(self._download))
        for prefix in (f"/{{version:{VERSION_PATTERN}}}", ""):
            r.add_post(prefix + "/{phone_number_id}/messages", route(self._send))
            r.add_post(prefix + "/{phone_number_id}/media", route(self._upload))
            r.add_get(prefix + "/{media_id}", route(self._media_info))
            r.add_delete(prefix + "/{media_id}", route(self._delete))
        r.register_resource(fallback := _AnyTarget())
        fallback.add_route("*", route(self._no_route))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); returns the base URL."""
        runner = web.AppRunner(self.app)
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
        if self.store is not None and self.cassette is not None:
            await asyncio.to_thread(self._read_cassette, self.store, self.cassette)

    def _read_cassette(self, store: CassetteStore, name: str) -> None:
        self._phone_ids.update(store.get_cassette(name).phone_number_ids)
        for ex in store.interactions(name, kinds=[Kind.GRAPH.value]):
            path = matching.normalize_path(ex.url)
            # Only sends are answered from recordings: media look-ups and downloads
            # are served from the cassette's media links.
            if ex.method.upper() != "POST" or not path.endswith("/messages"):
                continue
            if ex.response_status is None or not is_send_body(ex.request_body):
                continue
            segments = path.strip("/").split("/")
            if len(segments) == 2:  # /{phone_number_id}/messages
                self._phone_ids.add(segments[0])
            shape = RequestShape.of(ex.method, ex.url, ex.request_body, self.config.volatile)
            key = shape.key()
            self._recorded_shapes.setdefault(key, shape)
            answer = RecordedAnswer(
                ex.response_status, list(ex.response_headers), ex.response_body, ex.seq
            )
            self._recorded.setdefault(key, deque()).append(answer)

    def remaining_recordings(self) -> list[RecordedAnswer]:
        """Recorded send answers not replayed yet, in cassette order."""
        return sorted((a for q in self._recorded.values() for a in q), key=lambda a: a.seq)

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
        except web.HTTPException as e:
            response = self._error(_http_error(request, e), state)
        except Exception as e:
            # A bug of ours must still answer in Meta's shape, never aiohttp's HTML 500.
            logger.exception("fake Graph API failed on %s %s", request.method, request.path)
            err = GraphError(1, f"Internal error: {type(e).__name__}", http_status=500)
            response = self._error(err, state)
        if not response.prepared:
            response.headers.update(self._headers(state))
        if self.journal is not None:
            self._record(request, state, response)
        return response

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

    def _record(
        self, request: web.Request, state: _RequestState, response: web.StreamResponse
    ) -> None:
        if self.journal is None:
            return
        annotations = dict(state.annotations)
        body = state.raw_body
        if body is None:
            length = request.content_length
            annotations["request_body_size"] = str(length) if length is not None else "unknown"
            body = b""
        response_body = b""
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            response_body = redact_body(response.body)
        self.journal.record(
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

    # -- checks shared by handlers ---------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        token = bearer_token(request.headers, request.query)
        if token is None:
            raise bad_token("An access token is required to request this resource.")
        if not hmac.compare_digest(token.encode(), self.config.access_token.encode()):
            raise bad_token("Invalid OAuth access token - Cannot parse access token")

    def _phone_number_id(self, request: web.Request) -> str:
        phone_id = request.match_info.get("phone_number_id", self.config.account.phone_number_id)
        if phone_id not in self._phone_ids:
            raise unknown_object(phone_id)
        return phone_id

    def _base_url(self, request: web.Request) -> str:
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        if self.base_url is not None and self._runner is not None:
            host = self.base_url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
            if host not in _WILDCARD_HOSTS:
                return self.base_url
        # Not started by us, or bound to every interface: the address the bot used.
        return f"{request.scheme}://{request.host}"

    @property
    def _blob_store(self) -> CassetteStore | None:
        if self.store is not None:
            return self.store
        return self.journal.store if self.journal is not None else None

    async def _find_media(self, media_id: str) -> RunMedia | None:
        if media_id in self._deleted:
            return None
        upload = self.uploads.get(media_id)
        if upload is not None:
            return upload
        if self.store is None or self.cassette is None:
            return None
        try:
            link = await asyncio.to_thread(self.store.media, self.cassette, media_id)
        except MediaNotFound:
            return None
        return RunMedia(link.media_id, link.sha256, link.mime_type, link.size)

    # -- sends -------------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.StreamResponse:
        state = request[_STATE]
        state.messages_endpoint = True
        self._authorize(request)
        phone_id = self._phone_number_id(request)
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
        if send.media_id is not None and await self._find_media(send.media_id) is None:
            raise error_for_unknown_media(send.media_id)
        wamid = new_wamid(send.wa_id)
        self._accept(raw, send, wamid, recorded=False)
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
        queue = self._recorded.get(shape.key())
        if queue:
            answer = queue.popleft()
            state.annotations["replayed_seq"] = str(answer.seq)
            content_type = header_value(answer.headers, "Content-Type") or "application/json"
            wamid = wamid_of(answer.body)
            if answer.status == 200 and wamid is not None:
                self._accept(raw, send, wamid, recorded=True)
            return web.Response(
                status=answer.status, body=answer.body, headers={"Content-Type": content_type}
            )
        near = matching.nearest(shape, self._recorded_shapes.values())
        self.unmatched.append(UnmatchedSend(shape, near, time.time()))
        if self.config.strict:
            raise unmatched_error(shape, near)
        return None

    def _accept(self, raw: bytes, send: SendRequest, wamid: str, *, recorded: bool) -> None:
        self._accepted += (raw, wamid, recorded, time.time())
        if self.listener is not None:  # (no closure to build when nobody listens)
            self._notify(lambda listener: listener.on_send(send, wamid, recorded))

    def _notify(self, call: Callable[[SendListener], None]) -> None:
        if self.listener is None:
            return
        try:
            call(self.listener)
        except Exception:
            # The send is already accepted: failing it now would make the bot retry
            # and send twice, so a listener bug is logged rather than answered.
            logger.exception("send listener failed")

    # -- media -------------------------------------------------------------------------------

    async def _media_info(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        media_id = request.match_info["media_id"]
        media = await self._find_media(media_id)
        phone_id = request.query.get("phone_number_id")
        if media is None or (phone_id is not None and not self._belongs(media, phone_id)):
            raise unknown_object(media_id)
        signed = media_url.sign(self.config.url_secret, media_id, self.config.media_ttl_s)
        url = f"{self._base_url(request)}{media_url.DOWNLOAD_PATH}?{signed.query()}"
        return web.json_response(media_answer(media, url))

    def _belongs(self, media: RunMedia, phone_id: str) -> bool:
        """Meta: with `phone_number_id`, the look-up succeeds only for that number's media."""
        if media.phone_number_id is not None:
            return media.phone_number_id == phone_id
        return phone_id in self._phone_ids

    async def _download(self, request: web.Request) -> web.StreamResponse:
        request[_STATE].kind = Kind.MEDIA.value
        self._authorize(request)
        q = request.query
        secret = self.config.url_secret
        media_id = media_url.check(secret, q.get("mid"), q.get("ext"), q.get("hash"))
        if media_id is None:
            raise _not_downloadable("The media URL is invalid or expired; look the id up again.")
        media = await self._find_media(media_id)
        if media is None:
            raise _not_downloadable(f"Media {media_id} no longer exists.")
        return await self._stream(request, media)

    async def _download_by_id(self, request: web.Request) -> web.StreamResponse:
        request[_STATE].kind = Kind.MEDIA.value
        self._authorize(request)
        media_id = request.match_info["media_id"]
        media = await self._find_media(media_id)
        if media is None:
            raise _not_downloadable(f"Media {media_id} does not exist.")
        return await self._stream(request, media)

    async def _stream(self, request: web.Request, media: RunMedia) -> web.StreamResponse:
        """Send the blob chunk by chunk: memory stays at one chunk whatever its size."""
        state = request[_STATE]
        state.annotations["sha256"] = media.sha256
        response = web.StreamResponse(status=200)
        response.headers.update(self._headers(state))
        response.headers[hdrs.CONTENT_TYPE] = media.mime_type
        response.headers[hdrs.CONTENT_LENGTH] = str(media.size)
        await response.prepare(request)
        try:
            async for chunk in self._chunks(media):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            # The bot hung up mid-download; nothing left to answer, only to journal.
            state.annotations["error"] = "client disconnected during download"
        return response

    async def _chunks(self, media: RunMedia) -> AsyncIterator[bytes]:
        if media.data is not None:
            view = memoryview(media.data)
            for i in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[i : i + CHUNK_SIZE])
            return
        store = self._blob_store
        if store is None:
            return
        chunks = store.media_chunks(media.sha256)
        try:
            # One database read per chunk, each in a worker thread.
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            chunks.close()

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        phone_id = self._phone_number_id(request)
        if not request.content_type.startswith("multipart/"):
            raise GraphError(131008, "The parameter file is required; send multipart/form-data.")
        raw = request[_STATE].raw_body
        try:
            reader = (
                MultipartReader(request.headers, _bytes_reader(raw))
                if raw is not None
                else await request.multipart()
            )
            fields, spooled = await self._read_form(reader)
        except (ValueError, HttpProcessingError) as e:
            # aiohttp's parser rejects the body: the bot's mistake, not a server error.
            raise invalid_parameter(f"The multipart/form-data body is malformed: {e}") from e
        try:
            product = fields.get("messaging_product")
            if product is None:
                raise missing_parameter("messaging_product")
            if product != "whatsapp":
                raise bad_value("The parameter messaging_product must be 'whatsapp'.")
            if spooled is None:
                raise missing_parameter("file")
            if spooled.size == 0:
                raise GraphError(131053, "The uploaded file is empty.")
            mime = fields.get("type") or spooled.content_type or "application/octet-stream"
            media = await self._keep_upload(spooled, mime, phone_id)
        finally:
            if spooled is not None:
                spooled.file.close()
        return web.json_response({"id": media.media_id})

    @staticmethod
    async def _read_form(reader: MultipartReader) -> tuple[dict[str, str], _Spooled | None]:
        fields: dict[str, str] = {}
        spooled: _Spooled | None = None
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: not part of Meta's upload form
                if part.name == "file" and spooled is None:
                    spooled = await _spool(part)
                elif part.name:
                    fields[part.name] = await _read_field(part)
        except BaseException:
            if spooled is not None:
                spooled.file.close()
            raise
        return fields, spooled

    async def _keep_upload(self, spooled: _Spooled, mime: str, phone_id: str) -> RunMedia:
        """Store an upload's bytes (store, or memory without one) under a fresh media id."""
        media_id = new_media_id()
        store = self._blob_store
        data: bytes | None = None
        if store is None:
            data = await asyncio.to_thread(spooled.file.read)
        else:
            await asyncio.to_thread(store.put_media, cast(BinaryIO, spooled.file), mime)
        media = RunMedia(media_id, spooled.sha256, mime, spooled.size, data, phone_id)
        self.uploads[media_id] = media
        if store is not None:
            await self._link_to_run(store, spooled, media)
        return media

    async def _link_to_run(self, store: CassetteStore, spooled: _Spooled, media: RunMedia) -> None:
        """Link an upload to the run's cassette, so the journaled run can serve it later."""
        journal = self.journal
        if journal is None or journal.store is None or journal.name is None:
            return
        try:
            target = journal.store
            if target is not store:
                # The run's store is another database: it needs its own copy of the bytes.
                spooled.file.seek(0)
                blob = cast(BinaryIO, spooled.file)
                await asyncio.to_thread(target.put_media, blob, media.mime_type)
            await asyncio.to_thread(
                target.link_media, journal.name, media.media_id, media.sha256, media.mime_type
            )
        except Exception as e:
            # The bot's upload itself succeeded; the failure surfaces at journal.close().
            logger.error("could not link upload %s to run %s: %s", media.media_id, journal.name, e)
            if journal.error is None:
                journal.error = e

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        media_id = request.match_info["media_id"]
        if self.uploads.pop(media_id, None) is not None:
            self._deleted.add(media_id)
            return web.json_response({"success": True})
        if await self._find_media(media_id) is None:
            raise unknown_object(media_id)
        # A cassette's media id disappears for the rest of the run, as it would at Meta.
        self._deleted.add(media_id)
        return web.json_response({"success": True})

