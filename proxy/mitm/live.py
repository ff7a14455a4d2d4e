"""The one line `pseudowa record` prints per recorded exchange, and what it meant.

[webhook] POST /webhook 200 12 ms (message image wamid.X)
[graph] POST /v23.0/1234/messages 200 80 ms (send text wamid.Y)
[media] GET /whatsapp_business/attachments/ 200 31 ms (4096 B image/png, sha256 match)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.matching import parse_json
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import header_value


def live_line(kind: str, exchange: Exchange) -> str:
    """`[webhook] POST /webhook 200 12 ms (message image wamid.X)`."""
    path = urlsplit(exchange.url).path or exchange.url or "/"
    if exchange.response_status is not None:
        outcome = str(exchange.response_status)
    else:
        outcome = f"error: {exchange.error}" if exchange.error else "no answer"
    what = describe(exchange)
    ms = exchange.duration * 1000
    line = f"[{kind}] {exchange.method} {path} {outcome} {ms:.0f} ms"
    return line + (f" ({what})" if what else "")


def describe(exchange: Exchange) -> str:
    """What an exchange meant, in a few words (for the live line); never raises."""
    try:
        return _describe(exchange)
    except Exception:  # a description is decoration: a body we cannot read is not an error
        return ""


def _describe(x: Exchange) -> str:
    if x.kind == Kind.WEBHOOK:
        return _describe_webhook(x)
    if x.kind == Kind.MEDIA:
        return _describe_download(x)
    return _describe_graph(x)


def _describe_webhook(x: Exchange) -> str:
    if x.method.upper() == "GET" and "hub.mode" in x.url:
        return "verify"
    payload = webhooks.parse(x.request_body)
    events = webhooks.events(payload) if payload else []
    return ", ".join(" ".join(p for p in (e.category, e.type, e.wamid) if p) for e in events)


def _describe_download(x: Exchange) -> str:
    if x.response_status != 200:
        return ""
    # The recorder keeps downloaded bytes as a media blob, not in the exchange.
    size = x.annotations.get("media_size") or str(len(x.response_body))
    mime = x.annotations.get("mime_type") or header_value(x.response_headers, "content-type") or ""
    check = x.annotations.get("sha256")
    return f"{size} B {mime}".strip() + (f", sha256 {check}" if check else "")


def _describe_graph(x: Exchange) -> str:
    method = x.method.upper()
    request = parse_json(x.request_body) if method == "POST" else None
    answer = parse_json(x.response_body)
    if isinstance(request, dict) and urlsplit(x.url).path.rstrip("/").endswith("/messages"):
        if request.get("status") == "read":
            return f"mark read {request.get('message_id', '')}".strip()
        sent = answer.get("messages") if isinstance(answer, dict) else None
        first = sent[0] if isinstance(sent, list) and sent else None
        wamid = first.get("id") if isinstance(first, dict) else None
        return " ".join(str(p) for p in ("send", request.get("type"), wamid) if p)
    if method == "GET" and isinstance(answer, dict) and "mime_type" in answer:
        size = answer.get("file_size", "?")
        return f"media {answer.get('id', '')} {answer['mime_type']} {size} B"
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and "code" in error:
        return f"error #{error['code']}"
    return ""
