"""A flow as a scrubbed exchange, and the small helpers on flows and headers (tflow, no taddons)."""

from __future__ import annotations

import hashlib
import json

import pytest
from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from pseudowa.addons import redact
from pseudowa.addons.flows import INCOMPLETE
from pseudowa.addons.flows import MEDIA_ID_KEY
from pseudowa.addons.flows import MediaMeta
from pseudowa.addons.flows import Scrubber
from pseudowa.addons.flows import decoded_body
from pseudowa.addons.flows import fix_lengths
from pseudowa.addons.flows import flow_url
from pseudowa.addons.flows import graph_meta
from pseudowa.addons.flows import header_pairs
from pseudowa.addons.flows import mid_of
from pseudowa.addons.flows import mime_type
from pseudowa.addons.flows import rebase_url
from pseudowa.addons.flows import scrub_flow
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks as w
from pseudowa.proxy.contract.answers import bearer_token
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.storage.records import Kind
from pseudowa.storage.records import header_value

APP_SECRET = "5f2b0a6f3c8e4d1a9b7c6e5d4f3a2b1c"
TOKEN = "EAAGm0PX4ZCpsBAKZCZBtestAccessToken1234567890"
USER = "16505551234"
ACCOUNT = w.BusinessAccount()
PHONE_ID = ACCOUNT.phone_number_id
MEDIA_ID = "1037543291543636"
MEDIA_URL = (
    f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}"
    "&source=getMedia&ext=1749416983&hash=ARnJzQx2wYQ1u6Nf_ZPqj6c3N&_nc_cat=103"
    "&oh=01_Q5AaIGXb7v&oe=6851A2B3"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256))


def _flow(
    url: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    resp_headers: tuple[tuple[str, str], ...] = (),
    resp_body: bytes = b"{}",
    mode: str | None = None,
) -> http.HTTPFlow:
    req = tutils.treq(
        method=method.encode(),
        content=body,
        headers=http.Headers([(k.encode(), v.encode()) for k, v in headers]),
    )
    req.url = url
    resp = tutils.tresp(
        content=resp_body, headers=http.Headers([(k.encode(), v.encode()) for k, v in resp_headers])
    )
    f = tflow.tflow(req=req, resp=resp)
    if mode is not None:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
    return f


def _scrubber(*secrets: str, app_secret: str = APP_SECRET) -> Scrubber:
    scrubber = Scrubber()
    scrubber.configure(app_secret, secrets)
    return scrubber


# -- small helpers ----------------------------------------------------------------------------


def test_rebase_url():
    assert rebase_url(MEDIA_URL, "http://127.0.0.1:8082") == MEDIA_URL.replace(
        "https://lookaside.fbsbx.com", "http://127.0.0.1:8082"
    )


def test_header_lookup_and_bearer_token():
    headers = [("Content-Type", "application/json"), ("authorization", f"Bearer {TOKEN} ")]
    assert header_value(headers, "content-type") == "application/json"
    assert header_value(headers, "X-Missing") is None
    assert bearer_token(header_value(headers, "Authorization")) == TOKEN
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Image/JPEG; charset=binary", "image/jpeg"),
        ("audio/ogg", "audio/ogg"),
        ("", None),
        (None, None),
        ("; x=1", None),
    ],
)
def test_mime_type(value, expected):
    assert mime_type(value) == expected


def test_mid_of():
    assert mid_of(MEDIA_URL) == MEDIA_ID
    assert mid_of("https://graph.facebook.com/v23.0/1") is None


def test_fix_lengths():
    headers = [("Content-Encoding", "gzip"), ("Content-Length", "10"), ("X-A", "1")]
    assert fix_lengths(headers, b"abc", True) == [("Content-Length", "3"), ("X-A", "1")]
    assert fix_lengths(headers, None, False) == headers  # a blob keeps its real length


def test_decoded_body_undoes_gzip():
    response = tutils.tresp()
    response.headers["content-encoding"] = "gzip"
    response.content = b'{"ok":true}'
    assert response.raw_content != b'{"ok":true}'
    assert decoded_body(response, header_pairs(response)) == (b'{"ok":true}', True)
    plain = tutils.tresp(content=b"plain")
    assert decoded_body(plain, header_pairs(plain)) == (b"plain", False)


def test_header_pairs_keep_order_and_duplicates():
    message = tutils.treq(headers=http.Headers([(b"X-Dup", b"a"), (b"x-dup", b"b")]))
    assert header_pairs(message) == [("X-Dup", "a"), ("x-dup", "b")]


def test_graph_meta():
    assert graph_meta(f"https://graph.facebook.com/v23.0/{PHONE_ID}/messages") == (
        "v23.0",
        frozenset({PHONE_ID}),
    )
    assert graph_meta(f"https://graph.facebook.com/v22.0/{MEDIA_ID}") == ("v22.0", frozenset())


def test_flow_url_follows_the_listener():
    f = _flow("http://127.0.0.1:8000/webhook", mode="reverse:http://127.0.0.1:8000@9000")
    assert flow_url(f) == "http://127.0.0.1:8000/webhook"
    assert flow_url(_flow("https://graph.facebook.com/v23.0/1")) == (
        "https://graph.facebook.com/v23.0/1"
    )


# -- the scrubber ----------------------------------------------------------------------------


def test_scrubber_learns_long_credentials_from_traffic():
    scrubber = _scrubber("short-one")
    assert scrubber.secrets() == (APP_SECRET, "short-one")
    f = _flow(
        f"https://graph.facebook.com/v23.0/me?access_token={TOKEN[::-1]}&x=tiny",
        headers=(("Authorization", f"Bearer {TOKEN}"),),
    )
    scrubber.learn(f.request, header_pairs(f.request))
    learned = scrubber.secrets()
    assert set(learned[:2]) == {TOKEN, TOKEN[::-1]}  # longest first
    assert learned[2:] == (APP_SECRET, "short-one")
    tiny = _flow("https://graph.facebook.com/v23.0/me?access_token=abc")
    scrubber.learn(tiny.request, header_pairs(tiny.request))
    assert "abc" not in scrubber.secrets()  # too short to replace everywhere


def test_scrubber_clean_pseudonymises_when_asked():
    scrubber = _scrubber(TOKEN)
    body = json.dumps({"to": USER, "text": {"body": f"token {TOKEN}"}}).encode()
    assert scrubber.clean(body, scrubber.secrets()) == body.replace(TOKEN.encode(), b"REDACTED")
    scrubber.pseudonymizer = redact.Pseudonymizer()
    cleaned = json.loads(scrubber.clean(body, scrubber.secrets()))
    assert cleaned["to"] == scrubber.pseudonymizer.phone(USER) != USER


# -- a flow as a pending write -----------------------------------------------------------------


def test_a_graph_send_is_scrubbed():
    send = json.dumps(
        {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "hi"}}
    ).encode()
    f = _flow(
        f"https://graph.facebook.com/v23.0/{PHONE_ID}/messages?access_token={TOKEN}",
        method="POST",
        headers=(("Authorization", f"Bearer {TOKEN}"),),
        body=send,
    )
    pending = scrub_flow(f, Kind.GRAPH, _scrubber(), {}, {})
    x = pending.exchange
    assert pending.kind is Kind.GRAPH and x.kind is Kind.GRAPH
    assert x.url == f"https://graph.facebook.com/v23.0/{PHONE_ID}/messages"
    assert "authorization" not in [k.lower() for k, _ in x.request_headers]
    assert x.request_body == send
    assert (pending.graph_version, pending.phone_number_ids) == ("v23.0", frozenset({PHONE_ID}))
    assert pending.media is None and pending.events == []
    assert x.started_at == f.request.timestamp_start and x.finished_at == f.response.timestamp_end


def test_a_media_lookup_is_annotated_with_what_it_answered():
    f = _flow(f"https://graph.facebook.com/v23.0/{MEDIA_ID}")
    f.metadata[MEDIA_ID_KEY] = MEDIA_ID
    meta = {MEDIA_ID: MediaMeta(MEDIA_ID, None, "image/jpeg")}
    pending = scrub_flow(f, Kind.GRAPH, _scrubber(), {}, meta)
    assert pending.exchange.annotations == {"media_id": MEDIA_ID, "mime_type": "image/jpeg"}


def test_a_rewritten_lookup_stores_what_the_upstream_answered():
    f = _flow(f"https://graph.facebook.com/v23.0/{MEDIA_ID}", resp_body=b'{"url":"http://x/1"}')
    pending = scrub_flow(
        f,
        Kind.GRAPH,
        _scrubber(),
        {},
        {},
        media_rewrite="http://127.0.0.1:8082",
        original_response=b'{"url":"https://y/1"}',
    )
    assert pending.exchange.response_body == b'{"url":"https://y/1"}'
    assert pending.exchange.annotations["media_url_rewritten"] == "http://127.0.0.1:8082"


def test_a_webhook_carries_its_events_and_signature_state():
    body = w.dumps(
        w.inbound_webhook(
            ACCOUNT,
            w.message(
                "text", USER, w.text_body("hello"), wamid=new_wamid(USER), timestamp="1749416383"
            ),
        )
    )
    f = _flow(
        "http://127.0.0.1:8000/webhook",
        method="POST",
        body=body,
        headers=((signature.HEADER, signature.sign(APP_SECRET, body)),),
        resp_body=b"EVENT_RECEIVED",
    )
    pending = scrub_flow(f, Kind.WEBHOOK, _scrubber(), {}, {})
    assert pending.exchange.annotations == {"signature": "valid"}
    assert [(e.category, e.type) for e in pending.events] == [("message", "text")]
    assert pending.phone_number_ids == frozenset({PHONE_ID})
    names = [k.lower() for k, _ in pending.exchange.request_headers]
    assert signature.HEADER.lower() not in names
    unchecked = scrub_flow(f, Kind.WEBHOOK, _scrubber(app_secret=""), {}, {})
    assert unchecked.exchange.annotations == {"signature": "unchecked"}


def test_a_download_sets_its_bytes_apart():
    f = _flow(
        MEDIA_URL,
        resp_body=JPEG,
        resp_headers=(("Content-Type", "image/jpeg"), ("Content-Length", str(len(JPEG)))),
    )
    sha = hashlib.sha256(JPEG).hexdigest()
    meta = {MEDIA_ID: MediaMeta(MEDIA_ID, sha, "image/jpeg")}
    pending = scrub_flow(f, Kind.MEDIA, _scrubber(), {MEDIA_ID: MEDIA_ID}, meta)
    assert pending.media == JPEG and pending.media_id == MEDIA_ID
    assert (pending.media_mime, pending.expected_sha256) == ("image/jpeg", sha)
    x = pending.exchange
    assert x.response_body == b"" and ("Content-Length", str(len(JPEG))) in x.response_headers
    assert x.annotations == {
        "media_sha256": sha,
        "media_size": str(len(JPEG)),
        "mime_type": "image/jpeg",
        "media_id": MEDIA_ID,
    }
    assert "hash=" not in x.url and f"mid={MEDIA_ID}" in x.url


def test_an_unfinished_flow_is_marked_incomplete():
    f = _flow("https://graph.facebook.com/v23.0/1")
    f.response = None
    pending = scrub_flow(f, Kind.GRAPH, _scrubber(), {}, {}, incomplete=True)
    assert pending.exchange.error == INCOMPLETE and pending.exchange.response_status is None
