"""A finished mitmproxy flow as a scrubbed exchange ready for the cassette.

`scrub_flow` builds the `Pending` write of one flow: headers and bodies without secrets
(those given and those the traffic carries), personal data swapped for fakes when asked,
a webhook's events and signature state, a download's bytes set apart for the blob store.
It runs on the event loop, in completion order, because it updates the pseudonyms.

Below it are the small pure helpers on flows and headers, each written once.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from mitmproxy import http
from mitmproxy.proxy import mode_specs

from pseudowa.addons import redact
from pseudowa.addons.writer import Pending
from pseudowa.proxy.contract import matching
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.answers import bearer_token
from pseudowa.proxy.contract.ids import sha256_hex
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Headers
from pseudowa.storage.records import Kind
from pseudowa.storage.records import header_value

INCOMPLETE = "recording stopped before the exchange finished"
MEDIA_ID_KEY = "pseudowa_media_id"  # flow.metadata key: the media id a look-up answered for
MIN_LEARNED = 16  # shorter "tokens" seen in traffic are not learned as secrets


@dataclass
class MediaMeta:
    """What a media look-up said about a media id."""

    media_id: str
    sha256: str | None = None  # hex
    mime_type: str | None = None


class Scrubber:
    """What one recording scrubs: the secrets given and learned, and its pseudonyms."""

    def __init__(self) -> None:
        self.app_secret = ""
        self.pseudonymizer: redact.Pseudonymizer | None = None
        self._given: tuple[str, ...] = ()
        self._learned: set[str] = set()
        self._cache: tuple[str, ...] | None = None

    def configure(self, app_secret: str, secrets: Iterable[str]) -> None:
        """The app secret (it also checks webhook signatures) and the extra secrets."""
        self.app_secret = app_secret
        self._given = tuple(secrets)
        self._cache = None

    def secrets(self) -> tuple[str, ...]:
        """Everything to scrub, longest first (kept until a secret is given or learned)."""
        if self._cache is None:
            found = {self.app_secret, *self._given, *self._learned}
            self._cache = tuple(sorted(found - {""}, key=len, reverse=True))
        return self._cache

    def learn(self, request: http.Request, headers: Headers) -> None:
        """Credentials the traffic itself carries are scrubbed everywhere, even if not given.

        Only access tokens and proofs: long random strings. A verify token may be a
        plain word ("test") that replacing everywhere would mangle messages with; its
        query parameter is redacted anyway, and `pseudowa_secrets` can name it.
        """
        found = [bearer_token(header_value(headers, "Authorization"))]
        if "?" in request.path:
            found += [v for k, v in request.query.items(multi=True) if k in redact.SECRET_PARAMS]
        new = {v for v in found if v and len(v) >= MIN_LEARNED} - self._learned
        if new:
            self._learned |= new
            self._cache = None

    def clean(self, body: bytes, secrets: Sequence[str]) -> bytes:
        """A body without secrets, and with pseudonyms when the recording makes them."""
        body = redact.scrub_body(body, secrets)
        if self.pseudonymizer is not None:
            body = self.pseudonymizer.rewrite_body(body)
        return body


def scrub_flow(
    flow: http.HTTPFlow,
    kind: Kind,
    scrubber: Scrubber,
    media_ids: Mapping[str, str],
    media_meta: Mapping[str, MediaMeta],
    *,
    media_rewrite: str = "",
    incomplete: bool = False,
    original_response: bytes | None = None,
) -> Pending:
    """The scrubbed exchange of a flow, with its events and any download's bytes.

    `media_ids` maps download URLs and `mid`s handed out by media look-ups to media ids,
    `media_meta` media ids to what the look-up said. `original_response` is a look-up
    answer as the upstream sent it when the bot got one rewritten to `media_rewrite`.
    `incomplete` marks a flow still under way when the recording stopped.
    """
    request, response = flow.request, flow.response
    req_headers = header_pairs(request)
    scrubber.learn(request, req_headers)
    secrets = scrubber.secrets()
    url = flow_url(flow)
    is_webhook_post = kind == Kind.WEBHOOK and request.method.upper() == "POST"
    annotations: dict[str, str] = {}
    pending = Pending(kind, Exchange(kind, request.method, url), [])

    if is_webhook_post:
        annotations["signature"] = redact.signature_state(
            request.raw_content or b"",
            header_value(req_headers, signature.HEADER),
            scrubber.app_secret,
        )
    req_body, req_decoded = decoded_body(request, req_headers)
    req_body = scrubber.clean(req_body, secrets)

    status: int | None = None
    resp_headers: Headers = []
    resp_body = b""
    if response is not None:
        status = response.status_code
        all_headers = header_pairs(response)
        resp_headers = redact.scrub_headers(all_headers, secrets)
        raw, resp_decoded = decoded_body(response, all_headers)
        if original_response is not None:
            # Store what the upstream answered, not the URL we pointed the bot at.
            raw = original_response
            annotations["media_url_rewritten"] = media_rewrite
        if kind == Kind.MEDIA and status == 200 and raw:
            # The bytes live once, as a blob; the headers keep the real length.
            _set_download(pending, url, raw, resp_headers, annotations, media_ids, media_meta)
            resp_headers = fix_lengths(resp_headers, None, resp_decoded)
        else:
            resp_body = scrubber.clean(raw, secrets)
            resp_headers = fix_lengths(resp_headers, resp_body, resp_decoded)

    if is_webhook_post:
        payload = webhooks.parse(req_body)
        if payload is not None:
            found = webhooks.events(payload)
            pending.events = list(found)
            pending.phone_number_ids = frozenset(
                e.phone_number_id for e in found if e.phone_number_id
            )
    if kind == Kind.GRAPH:
        pending.graph_version, phone_number_ids = graph_meta(url)
        if phone_number_ids:
            pending.phone_number_ids = phone_number_ids
        looked_up = flow.metadata.get(MEDIA_ID_KEY)
        if looked_up:
            annotations["media_id"] = looked_up
            meta = media_meta.get(looked_up)
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
        kind=kind,
        method=request.method,
        url=_scrub_url(url, secrets),
        request_headers=fix_lengths(
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


def media_lookup_answer(body: bytes, request_url: str) -> tuple[dict[str, Any], MediaMeta] | None:
    """A media look-up's answer (JSON naming a download `url`) and what it says of the media.

    The media id is the answer's `id`, else the last segment of the look-up's path.
    None for any other answer.
    """
    parsed = matching.parse_json(body)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("url"), str):
        return None
    media_id = parsed.get("id")
    if not isinstance(media_id, str) or not media_id:
        media_id = matching.normalize_path(request_url).rstrip("/").rsplit("/", 1)[-1]
    mime = parsed.get("mime_type")
    meta = MediaMeta(
        media_id, sha256_hex(parsed.get("sha256")), mime if isinstance(mime, str) else None
    )
    return parsed, meta


def _set_download(
    pending: Pending,
    url: str,
    data: bytes,
    headers: Headers,
    annotations: dict[str, str],
    media_ids: Mapping[str, str],
    media_meta: Mapping[str, MediaMeta],
) -> None:
    """Set a download's bytes apart on `pending`, with the media id and type they are of."""
    mid = mid_of(url)
    media_id = (
        media_ids.get(url)
        or media_ids.get(redact.scrub_url(url))
        or (media_ids.get(mid) if mid else None)
        or mid
    )
    meta = media_meta.get(media_id) if media_id else None
    mime = mime_type(header_value(headers, "Content-Type")) or (meta.mime_type if meta else None)
    pending.media = data
    pending.media_id = media_id
    pending.media_mime = mime or "application/octet-stream"
    pending.expected_sha256 = meta.sha256 if meta else None
    annotations["media_sha256"] = hashlib.sha256(data).hexdigest()
    annotations["media_size"] = str(len(data))
    annotations["mime_type"] = pending.media_mime
    if media_id:
        annotations["media_id"] = media_id


# -- small pure helpers -------------------------------------------------------------------


def mime_type(content_type: str | None) -> str | None:
    """`image/jpeg` of `Image/JPEG; charset=...`; None when there is none."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def mid_of(url: str) -> str | None:
    """The `mid` query parameter of a (media download) URL, or None."""
    return dict(parse_qsl(urlsplit(url).query)).get("mid")


def rebase_url(url: str, base: str) -> str:
    """`url` with its scheme://host:port replaced by those of `base`."""
    old, new = urlsplit(url), urlsplit(base)
    return old._replace(scheme=new.scheme, netloc=new.netloc).geturl()


def flow_url(flow: http.HTTPFlow) -> str:
    """The URL the flow went to: the target's in reverse mode, else as the client named it."""
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return flow.request.url
    return flow.request.pretty_url


def header_pairs(message: http.Message) -> Headers:
    """`message.headers.items(multi=True)`, decoded as mitmproxy does, in a fraction of the time."""
    return [
        (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
        for k, v in message.headers.fields
    ]


def decoded_body(message: http.Message, headers: Sequence[tuple[str, str]]) -> tuple[bytes, bool]:
    """The body with its content-encoding undone, and whether it was undone."""
    raw = message.raw_content
    if raw is None:
        return b"", False
    if not header_value(headers, "content-encoding"):
        return raw, False
    content = message.get_content(strict=False)
    if content is None:
        return b"", False
    decoded = content is not raw and "content-encoding" in message.headers
    return content, decoded


def fix_lengths(headers: Headers, body: bytes | None, decoded: bool) -> Headers:
    """Headers that describe the stored body: no Content-Encoding once decoded, its length.

    `body` None keeps Content-Length (a media body stored as a blob keeps its size).
    """
    out: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if decoded and lowered == "content-encoding":
            continue
        if lowered == "content-length" and body is not None:
            value = str(len(body))
        out.append((name, value))
    return out


@functools.lru_cache(maxsize=1024)  # a bot calls the same few URLs over and over
def graph_meta(url: str) -> tuple[str | None, frozenset[str]]:
    """The Graph version a URL names, and the phone number id of a send or an upload."""
    segments = matching.normalize_path(url).strip("/").split("/")
    phone = len(segments) == 2 and segments[1] in ("messages", "media") and segments[0].isdigit()
    version: str | None = matching.graph_version(url)
    return version, frozenset({segments[0]} if phone else ())


@functools.lru_cache(maxsize=1024)
def _scrub_url(url: str, secrets: tuple[str, ...]) -> str:
    scrubbed: str = redact.scrub_url(url, secrets)
    return scrubbed
