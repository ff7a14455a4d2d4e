"""What the Graph API answers, built from plain values: bodies, headers and errors.

Pure functions over the contract's own types and primitives (no server, no store): the
fake Graph API (`proxy/sandbox/graph.py`, `media.py`) calls them for every answer, and
anything else that must speak like Meta can too. The journal scrubbers at the end say
which parts of a Graph request or answer are secrets: the Bearer token, Graph's
`access_token=` and lookaside's download signature `hash=`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import GraphError
from .hosts import DEFAULT_API_VERSION
from .matching import RequestShape
from .matching import graph_version
from .matching import parse_json
from .outbound import SendRequest

Nearest = list[tuple[RequestShape, list[str]]]

REDACTED = "REDACTED"
_SECRET_QUERY = re.compile(r"([?&](?:hash|access_token)=)[^&#\s\"']*")

# The synthesized send answer (OpenAPI `MessageResponsePayload`) as compact JSON, filled
# by hand: json.dumps of a dict, then encoding it, cost as much as the rest of the answer.
_SEND_ANSWER = (
    '{"messaging_product":"whatsapp","contacts":[{"input":%s,"wa_id":%s}],"messages":[{"id":%s%s}]}'
)
_json_string = json.encoder.encode_basestring_ascii  # json.dumps of one str, in C


# -- sends -------------------------------------------------------------------------------


def send_answer_body(send: SendRequest, wamid: str) -> bytes:
    """The 200 body Meta answers a send with, as compact JSON bytes.

    Template sends also carry `message_status: accepted` (their pacing state); plain
    sends omit it, as Meta does.
    """
    status = ',"message_status":"accepted"' if send.type == "template" else ""
    to, wa_id, id_ = _json_string(send.to), _json_string(send.wa_id), _json_string(wamid)
    return (_SEND_ANSWER % (to, wa_id, id_, status)).encode()


def wamid_of(body: bytes) -> str | None:
    """The first `messages[].id` of a send answer, if any."""
    parsed = parse_json(body)
    if isinstance(parsed, dict):
        messages = parsed.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            return wamid if isinstance(wamid, str) else None
    return None


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


@functools.lru_cache(maxsize=256)
def api_version(path: str) -> str:
    """`facebook-api-version` for a request path (cached: a bot uses a few paths, often)."""
    return graph_version(path) or DEFAULT_API_VERSION


def describe_nearest(near: Nearest) -> str:
    """The closest recorded requests, numbered, each with the fields that differ."""
    if not near:
        return "the cassette has no recorded sends"
    lines = [
        f"[{i}] {cand.describe()} differs in: "
        + (", ".join(fields) or "nothing (its recorded answers were all used)")
        for i, (cand, fields) in enumerate(near, 1)
    ]
    return "nearest recorded requests: " + "; ".join(lines)


def unmatched_error(shape: RequestShape, near: Nearest) -> GraphError:
    """Strict mode's answer to a send no recording covers, naming the closest recordings."""
    message = f"no recording matched {shape.method} {shape.path}"
    return GraphError(100, describe_nearest(near), message=message)


# -- media -------------------------------------------------------------------------------


def media_answer(media_id: str, url: str, mime_type: str, sha256: str, size: int) -> dict[str, Any]:
    """The body of `GET /{media_id}`: sha256 in hex and file_size as a string, like Meta."""
    return {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": mime_type,
        "sha256": sha256,
        "file_size": str(size),
        "id": media_id,
    }


def not_downloadable(details: str) -> GraphError:
    """lookaside answers 404 to expired, forged or unknown download URLs."""
    return GraphError(100, details, http_status=404, type="GraphMethodException")


# -- requests no handler takes -------------------------------------------------------------


def http_error(status: int, reason: str, method: str, path: str) -> GraphError:
    """A router or body-size error (`status`, `reason`) in Meta's envelope.

    Meta answers an unknown path or edge 400 with code 100, never a bare 404/405 page.
    """
    if status == 404:
        message = f"Unknown path components: {path}"
        return GraphError(100, message, message=message)
    if status == 405:
        message = f"Unsupported {method.lower()} request."
        return GraphError(100, message, message=message, http_status=400)
    return GraphError(100, reason, message=f"(#100) {reason}", http_status=status)


def bearer_token(authorization: str | None, access_token: str | None = None) -> str | None:
    """The access token of a request: from its `Authorization: Bearer …` header value, else
    Graph's `access_token=` query parameter (`access_token`); None when neither has one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return access_token or None


# -- what a journal keeps ------------------------------------------------------------------


def redact_url(path_qs: str) -> str:
    """A path+query with the download signature and any access token replaced by REDACTED."""
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", path_qs)


def redact_body(body: bytes) -> bytes:
    """A response body with the signatures of the download URLs it holds redacted."""
    if b"hash=" not in body and b"access_token=" not in body:
        return body
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", body.decode("utf-8", "replace")).encode()


def journal_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Request headers as a journal keeps them: everything but the Bearer token."""
    return [(k, v) for k, v in headers.items() if k.lower() != "authorization"]
