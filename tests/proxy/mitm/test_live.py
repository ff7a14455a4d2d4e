"""The one line `pseudowa record` prints per exchange, and the few words of what it meant."""

from __future__ import annotations

import json

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.mitm.live import describe
from pseudowa.proxy.mitm.live import live_line
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind

PHONE_ID = seeds.ACCOUNT.phone_number_id
SEND_URL = f"https://graph.facebook.com/v23.0/{PHONE_ID}/messages"


def _message_webhook(wamid: str) -> bytes:
    image = {"id": "4711", "mime_type": "image/png"}
    message = webhooks.message("image", seeds.USER, image, wamid=wamid)
    return webhooks.dumps(webhooks.inbound_webhook(seeds.ACCOUNT, message))


def test_live_line_names_kind_method_path_status_time_and_meaning() -> None:
    x = Exchange(
        Kind.WEBHOOK,
        "POST",
        "http://127.0.0.1:8000/webhook?x=1",
        request_body=_message_webhook("wamid.A"),
        response_status=200,
        started_at=10.0,
        finished_at=10.012,
    )
    assert live_line("webhook", x) == "[webhook] POST /webhook 200 12 ms (message image wamid.A)"


def test_live_line_without_an_answer() -> None:
    failed = Exchange(
        Kind.GRAPH, "GET", "https://graph.facebook.com/v23.0/me", error="connection refused"
    )
    assert live_line("graph", failed) == "[graph] GET /v23.0/me error: connection refused 0 ms"
    silent = Exchange(Kind.GRAPH, "GET", "https://graph.facebook.com/v23.0/me")
    assert live_line("graph", silent) == "[graph] GET /v23.0/me no answer 0 ms"
    assert live_line("graph", Exchange(Kind.GRAPH, "GET", "")) == "[graph] GET / no answer 0 ms"


def test_webhooks_verify_and_statuses() -> None:
    verify = Exchange(Kind.WEBHOOK, "GET", "http://bot/webhook?hub.mode=subscribe&hub.challenge=1")
    assert describe(verify) == "verify"
    status = webhooks.status("wamid.S", "delivered", seeds.USER)
    body = webhooks.dumps(webhooks.status_webhook(seeds.ACCOUNT, [status]))
    assert describe(Exchange(Kind.WEBHOOK, "POST", "http://bot/webhook", request_body=body)) == (
        "status delivered wamid.S"
    )
    assert describe(Exchange(Kind.WEBHOOK, "POST", "http://bot/webhook", request_body=b"{}")) == ""


def test_graph_sends_read_receipts_lookups_and_errors() -> None:
    send = Exchange(
        Kind.GRAPH,
        "POST",
        SEND_URL,
        request_body=json.dumps({"type": "text", "text": {"body": "hi"}}).encode(),
        response_status=200,
        response_body=json.dumps({"messages": [{"id": "wamid.R"}]}).encode(),
    )
    assert describe(send) == "send text wamid.R"
    read = Exchange(
        Kind.GRAPH,
        "POST",
        SEND_URL + "/",
        request_body=b'{"status": "read", "message_id": "wamid.A"}',
    )
    assert describe(read) == "mark read wamid.A"
    lookup = Exchange(
        Kind.GRAPH,
        "GET",
        "https://graph.facebook.com/v23.0/4711",
        response_body=b'{"id": "4711", "mime_type": "image/png", "file_size": 90}',
    )
    assert describe(lookup) == "media 4711 image/png 90 B"
    refused = Exchange(
        Kind.GRAPH,
        "POST",
        SEND_URL,
        request_body=b"not json",
        response_status=400,
        response_body=b'{"error": {"code": 131009}}',
    )
    assert describe(refused) == "error #131009"
    assert describe(Exchange(Kind.GRAPH, "GET", "https://graph.facebook.com/v23.0/me")) == ""


def test_media_downloads_say_size_type_and_checksum() -> None:
    kept = Exchange(
        Kind.MEDIA,
        "GET",
        "https://lookaside.fbsbx.com/x",
        response_status=200,
        annotations={"media_size": "4096", "mime_type": "image/png", "sha256": "match"},
    )
    assert describe(kept) == "4096 B image/png, sha256 match"
    inline = Exchange(
        Kind.MEDIA,
        "GET",
        "https://lookaside.fbsbx.com/x",
        response_status=200,
        response_headers=[("Content-Type", "image/jpeg")],
        response_body=b"abc",
    )
    assert describe(inline) == "3 B image/jpeg"
    denied = Exchange(Kind.MEDIA, "GET", "https://lookaside.fbsbx.com/x", response_status=401)
    assert describe(denied) == ""


def test_describe_never_raises_on_junk() -> None:
    junk = Exchange(
        "graph",
        "POST",
        SEND_URL,
        request_body=b'{"type": "text"}',
        response_body=b'{"messages": "not a list"}',
    )
    assert describe(junk) == "send text"
    odd = Exchange(
        Kind.MEDIA,
        "GET",
        "x",
        response_status=200,
        annotations={"media_size": "1"},
        response_headers=None,  # type: ignore[arg-type]
    )
    assert describe(odd) == ""  # a header list it cannot read: no words, no error
