"""The fake Graph API over real sockets: sends, recordings, faults, routing, the journal.

Media and uploads are tests/proxy/sandbox/test_media.py's; the answer builders are
tests/proxy/contract/test_answers.py's.

Every success and error body is checked against Meta's OpenAPI schemas
(tests/openapi.py), so the fake cannot drift from the published contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
from typing import Any

import aiohttp
import pytest

# tests/ is on sys.path (rootdir conftest, no __init__.py), so the schema helper
# imports by its module name.
from graph_client import ACCOUNT
from graph_client import AUTH
from graph_client import BLOB
from graph_client import BLOB_MIME
from graph_client import CASSETTE
from graph_client import MEDIA_ID
from graph_client import PHONE_ID
from graph_client import TO
from graph_client import TOKEN
from graph_client import Listener
from graph_client import Serve
from graph_client import assert_graph_error
from graph_client import media_url
from graph_client import record_send
from graph_client import send
from graph_client import text
from graph_client import upload
from openapi import validate

from pseudowa.proxy.contract.hosts import DEFAULT_API_VERSION
from pseudowa.proxy.contract.ids import is_wamid
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.store import CassetteStore

# -- sends -------------------------------------------------------------------------------

SENDS: dict[str, dict[str, Any]] = {
    "text": text("hello"),
    "image_id": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "image",
        "image": {"id": MEDIA_ID, "caption": "look"},
    },
    "image_link": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "image",
        "image": {"link": "https://example.com/a.jpg"},
    },
    "audio": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "audio",
        "audio": {"link": "https://example.com/a.ogg"},
    },
    "video": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "video",
        "video": {"link": "https://example.com/a.mp4", "caption": "v"},
    },
    "document": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "document",
        "document": {"link": "https://example.com/a.pdf", "filename": "a.pdf"},
    },
    "sticker": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "sticker",
        "sticker": {"id": MEDIA_ID},
    },
    "location": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "location",
        "location": {"latitude": 52.52, "longitude": 13.405, "name": "Berlin"},
    },
    "contacts": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "contacts",
        "contacts": [
            {
                "name": {"formatted_name": "Ana B", "first_name": "Ana"},
                "phones": [{"phone": "+15550001111", "type": "CELL"}],
            }
        ],
    },
    "template": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "template",
        "template": {
            "name": "hello_world",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
        },
    },
    "button": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick one"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "no", "title": "No"}},
                ]
            },
        },
    },
    "list": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "header": {"type": "text", "text": "H"},
            "body": {"text": "B"},
            "footer": {"text": "F"},
            "action": {
                "button": "Options",
                "sections": [
                    {"title": "S1", "rows": [{"id": "r1", "title": "Row 1", "description": "d"}]}
                ],
            },
        },
    },
    "reaction": {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": "reaction",
        "reaction": {"message_id": "wamid.HBgLMTY1", "emoji": "\U0001f600"},
    },
}


async def test_every_outbound_type_is_accepted_with_a_fresh_wamid(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    wamids = set()
    for name, body in SENDS.items():
        status, headers, answer = await send(http, base, body)
        assert status == 200, (name, answer)
        validate("MessageResponsePayload", answer)
        assert answer["messaging_product"] == "whatsapp"
        assert answer["contacts"] == [{"input": TO, "wa_id": TO}]
        wamid = answer["messages"][0]["id"]
        assert is_wamid(wamid)
        wamids.add(wamid)
        if name == "template":
            assert answer["messages"][0]["message_status"] == "accepted"
        else:
            assert "message_status" not in answer["messages"][0]
        assert headers["facebook-api-version"] == "v21.0"
        assert headers["x-fb-trace-id"] and headers["x-fb-request-id"]
        usage = json.loads(headers["x-business-use-case-usage"])
        assert usage[ACCOUNT.waba_id][0]["type"] == "whatsapp"
    assert len(wamids) == len(SENDS)


async def test_input_echoes_to_as_sent(serve: Serve, http: aiohttp.ClientSession) -> None:
    _, base = await serve()
    status, _, answer = await send(http, base, text("hi", to="+1 (650) 555-1234"))
    assert status == 200
    assert answer["contacts"] == [{"input": "+1 (650) 555-1234", "wa_id": "16505551234"}]


async def test_mark_as_read(serve: Serve, http: aiohttp.ClientSession) -> None:
    listener = Listener()
    graph, base = await serve(listener=listener)
    body = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.HBgLabc",
        "typing_indicator": {"type": "text"},
    }
    status, headers, answer = await send(http, base, body)
    assert (status, answer) == (200, {"success": True})
    validate("MarkMessageResponsePayload", answer)
    assert listener.reads == [MarkRead("wamid.HBgLabc", True)]
    assert listener.sends == []
    assert "x-business-use-case-usage" in headers


@pytest.mark.parametrize(
    ("body", "code", "http_status"),
    [
        pytest.param(
            {"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}},
            131008,
            400,
            id="missing-to",
        ),
        pytest.param(
            {"messaging_product": "whatsapp", "to": TO, "type": "hologram", "hologram": {}},
            131009,
            400,
            id="unknown-type",
        ),
        pytest.param(
            {"messaging_product": "whatsapp", "to": TO, "type": "image"},
            131008,
            400,
            id="missing-sub-object",
        ),
        pytest.param(b'{"messaging_product": "whatsapp", "to": ', 100, 400, id="malformed-json"),
        pytest.param(
            {"to": TO, "type": "text", "text": {"body": "x"}},
            131008,
            400,
            id="missing-messaging-product",
        ),
        pytest.param(
            {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "image",
                "image": {"id": "999999999999999"},
            },
            131053,
            400,
            id="unknown-media-id",
        ),
    ],
)
async def test_invalid_sends_get_metas_envelope(
    serve: Serve,
    http: aiohttp.ClientSession,
    body: dict[str, Any] | bytes,
    code: int,
    http_status: int,
) -> None:
    listener = Listener()
    graph, base = await serve(listener=listener)
    status, headers, answer = await send(http, base, body)
    assert_graph_error(status, headers, answer, code, http_status)
    assert listener.sends == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer nope"}, id="wrong"),
        pytest.param({"Authorization": TOKEN}, id="not-bearer"),
    ],
)
async def test_bad_token_is_190_401_on_every_route(
    serve: Serve,
    http: aiohttp.ClientSession,
    sqlite_store: CassetteStore,
    cassette: str,
    headers: dict[str, str],
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    status, resp_headers, answer = await send(http, base, text("x"), headers=headers)
    assert_graph_error(status, resp_headers, answer, 190, 401)
    for method, path in [
        ("GET", f"/v21.0/{MEDIA_ID}"),
        ("DELETE", f"/v21.0/{MEDIA_ID}"),
        ("POST", f"/v21.0/{PHONE_ID}/media"),
        ("GET", f"/media/{MEDIA_ID}"),
        ("GET", f"/media/download/{MEDIA_ID}"),
    ]:
        async with http.request(method, base + path, headers=headers) as resp:
            assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 190, 401)


async def test_access_token_query_parameter_is_accepted(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    async with http.post(
        f"{base}/v21.0/{PHONE_ID}/messages?access_token={TOKEN}", json=text("hi")
    ) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("version", ["/v18.0", "/v21.0", "/v23.0", "/v26.0", "/v3", ""])
async def test_any_version_and_none(
    serve: Serve, http: aiohttp.ClientSession, version: str
) -> None:
    _, base = await serve()
    status, headers, answer = await send(http, base, text("hi"), version=version)
    assert status == 200, answer
    validate("MessageResponsePayload", answer)
    assert headers["facebook-api-version"] == (version.lstrip("/") or DEFAULT_API_VERSION)


async def test_seed_routes(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    listener = Listener()
    graph, base = await serve(store=sqlite_store, cassette=cassette, listener=listener)
    async with http.post(f"{base}/messages", json=text("seed"), headers=AUTH) as resp:
        assert resp.status == 200
        validate("MessageResponsePayload", await resp.json())
    async with http.get(f"{base}/media/{MEDIA_ID}", headers=AUTH) as resp:
        meta = await resp.json()
        assert resp.status == 200 and meta["id"] == MEDIA_ID
    async with http.get(f"{base}/media/download/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == BLOB_MIME
        assert await resp.read() == BLOB
    async with http.get(f"{base}/media/download/404404404", headers=AUTH) as resp:
        assert resp.status == 404
        validate("GraphAPIError", await resp.json())
    assert [s.body["text"]["body"] for s, _, _ in listener.sends] == ["seed"]


async def test_unknown_phone_number_id(serve: Serve, http: aiohttp.ClientSession) -> None:
    _, base = await serve()
    status, headers, answer = await send(http, base, text("x"), phone="999000")
    assert_graph_error(status, headers, answer, 100, 400)
    assert answer["error"]["error_subcode"] == 33


async def test_cassette_phone_ids_are_accepted(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    sqlite_store.update_cassette(cassette, phone_number_ids=[PHONE_ID, "200200200"])
    _, base = await serve(store=sqlite_store, cassette=cassette)
    status, _, _ = await send(http, base, text("x"), phone="200200200")
    assert status == 200


# -- recorded answers ----------------------------------------------------------------------


async def test_recorded_answer_is_replayed_verbatim_once(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    recorded_wamid = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    ok = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": TO, "wa_id": TO}],
        "messages": [{"id": recorded_wamid}],
    }
    failed = {
        "error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": 131047,
            "error_data": {"messaging_product": "whatsapp", "details": "more than 24 hours"},
            "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUvW",
        }
    }
    image = {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "image",
        "image": {"id": "7777777777777777"},
    }  # the id of an upload during recording
    record_send(sqlite_store, image, 200, ok, content_type="application/json; charset=UTF-8")
    record_send(sqlite_store, text("late"), 400, failed)
    listener = Listener()
    journal = Journal()
    graph, base = await serve(
        store=sqlite_store, cassette=cassette, listener=listener, journal=journal
    )

    # Media ids are volatile: the bot's id of this run matches the recorded one.
    live_image = {**image, "image": {"id": MEDIA_ID}}
    live_url = f"{base}/v23.0/{PHONE_ID}/messages"
    async with http.post(live_url, json=live_image, headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert await resp.read() == json.dumps(ok).encode()
    status, _, again = await send(http, base, live_image)
    assert status == 200 and again["messages"][0]["id"] != recorded_wamid
    validate("MessageResponsePayload", again)

    status, headers, err = await send(http, base, text("late"))
    assert status == 400 and err == failed
    validate("GraphAPIError", err)
    status, _, fine = await send(http, base, text("late"))
    assert status == 200

    assert [(w, r) for _, w, r in listener.sends] == [
        (recorded_wamid, True),
        (again["messages"][0]["id"], False),
        (fine["messages"][0]["id"], False),
    ]
    # Every recorded answer was replayed: none remains.
    recorded_seqs = {str(x.seq) for x in sqlite_store.interactions(CASSETTE)}
    assert {e.annotations.get("replayed_seq") for e in journal.exchanges} >= recorded_seqs
    assert len(graph.unmatched) == 2


async def test_strict_mode_names_nearest_recordings(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    ok = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": TO, "wa_id": TO}],
        "messages": [{"id": "wamid.HBgLrecorded"}],
    }
    record_send(sqlite_store, text("hello"), 200, ok)
    record_send(sqlite_store, text("bye", to="4915112345678"), 200, ok)
    listener = Listener()
    graph, base = await serve(
        GraphConfig(access_token=TOKEN, strict=True),
        store=sqlite_store,
        cassette=cassette,
        listener=listener,
    )

    status, headers, err = await send(http, base, text("hullo"))
    assert_graph_error(status, headers, err, 100, 400)
    assert err["error"]["message"].startswith("no recording matched")
    details = err["error"]["error_data"]["details"]
    assert "body.text.body" in details and "[1]" in details and "[2]" in details
    assert graph.unmatched[-1].nearest[0][1] == ["body.text.body"]
    assert sorted(graph.unmatched[-1].nearest[1][1]) == ["body.text.body", "body.to"]

    status, _, answer = await send(http, base, text("hello"))
    assert (status, answer) == (200, ok)
    status, _, err = await send(http, base, text("hello"))  # its one answer is used up
    assert status == 400 and err["error"]["message"].startswith("no recording matched")
    assert graph.unmatched[-1].nearest[0][1] == []
    assert len(graph.unmatched) == 2 and len(listener.sends) == 1
    assert str(graph.unmatched[0]).startswith("no recording matched POST")


async def test_strict_mode_with_an_empty_cassette(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(
        GraphConfig(access_token=TOKEN, strict=True), store=sqlite_store, cassette=cassette
    )
    status, headers, err = await send(http, base, text("hi"))
    assert_graph_error(status, headers, err, 100, 400)
    assert "no recorded sends" in err["error"]["error_data"]["details"]


# -- faults, latency, routing ------------------------------------------------------------


@pytest.mark.parametrize(("code", "http_status"), [(131000, 500), (130429, 400)])
async def test_fault_injection(
    serve: Serve, http: aiohttp.ClientSession, code: int, http_status: int
) -> None:
    listener = Listener()
    config = GraphConfig(access_token=TOKEN, fail_rate=1.0, fail_codes=(code,), seed=3)
    graph, base = await serve(config, listener=listener)
    status, headers, err = await send(http, base, text("x"))
    assert_graph_error(status, headers, err, code, http_status)
    assert listener.sends == []
    # Auth and validation still come first.
    status, headers, err = await send(http, base, text("x"), headers={})
    assert_graph_error(status, headers, err, 190, 401)


async def test_fault_injection_is_reproducible_with_a_seed(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    patterns = []
    for _ in range(2):
        config = GraphConfig(
            access_token=TOKEN, fail_rate=0.5, fail_codes=(131000, 130429), seed=42, jitter_ms=1
        )
        _, base = await serve(config)
        statuses = []
        for i in range(16):
            status, _, _ = await send(http, base, text(f"m{i}"))
            statuses.append(status)
        patterns.append(statuses)
    assert patterns[0] == patterns[1]
    assert {200, 500, 400} >= set(patterns[0]) and 200 in patterns[0] and len(set(patterns[0])) > 1


async def test_latency_delays_every_route(serve: Serve, http: aiohttp.ClientSession) -> None:
    _, base = await serve(GraphConfig(access_token=TOKEN, latency_ms=150, jitter_ms=50))
    for call in (lambda: send(http, base, text("x")), lambda: http.get(f"{base}/nowhere/at/all")):
        started = time.monotonic()
        result = await call()
        if isinstance(result, aiohttp.ClientResponse):
            result.release()
        assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v21.0/a/b/c"),
        ("POST", "/v21.0/106540352242922/unknown_edge"),
        ("PUT", f"/v21.0/{PHONE_ID}/messages"),
        ("GET", "/"),
    ],
)
async def test_unknown_routes_answer_json_400(
    serve: Serve, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    _, base = await serve()
    async with http.request(method, base + path, headers=AUTH) as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        answer = await resp.json()
        assert_graph_error(resp.status, dict(resp.headers), answer, 100, 400)


async def test_asterisk_request_target_answers_json_400(serve: Serve) -> None:
    """`OPTIONS *` matches no path pattern; it still gets Meta's envelope, like any miss."""
    _, base = await serve()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert_graph_error(int(lines[0].split()[1]), headers, json.loads(body), 100, 400)


async def test_unexpected_failure_is_a_json_500(
    serve: Serve,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph, base = await serve()

    async def boom(media_id: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(graph.media, "find", boom)
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 1, 500)
    assert "disk on fire" in caplog.text


async def test_listener_failure_does_not_fail_the_send(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Listener):
        def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
            raise ValueError("listener bug")

    _, base = await serve(listener=Broken())
    status, _, answer = await send(http, base, text("x"))
    assert status == 200 and answer["messages"][0]["id"].startswith("wamid.")  # accepted
    assert "listener bug" in caplog.text


async def test_listener_gets_the_returned_wamid(serve: Serve, http: aiohttp.ClientSession) -> None:
    listener = Listener()
    _, base = await serve(listener=listener)
    status, _, answer = await send(http, base, text("ping", to="+16505551234"))
    assert status == 200
    [(sent, wamid, recorded)] = listener.sends
    assert wamid == answer["messages"][0]["id"] and recorded is False
    assert (sent.to, sent.wa_id, sent.type) == ("+16505551234", TO, "text")


# -- journal -----------------------------------------------------------------------------


async def test_journal_records_every_request_without_secrets(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    sqlite_store.create_cassette("run", source="sandbox")
    journal = Journal(sqlite_store, "run")
    _, base = await serve(store=sqlite_store, cassette=cassette, journal=journal)

    sent_body = json.dumps(text("journal me")).encode()
    async with http.post(
        f"{base}/v21.0/{PHONE_ID}/messages",
        data=sent_body,
        headers={**AUTH, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 200
    url = await media_url(http, base)
    signature = re.search(r"hash=([0-9a-f]+)", url)
    assert signature is not None
    async with http.get(url, headers=AUTH) as resp:
        assert await resp.read() == BLOB
    async with http.get(url) as resp:
        assert resp.status == 401
    status, uploaded = await upload(http, base, b"tiny upload", "text/plain")
    assert status == 200
    async with http.get(f"{base}/no/such/route", headers=AUTH) as resp:
        assert resp.status == 400

    ex = journal.exchanges
    assert [(e.kind, e.method, e.response_status) for e in ex] == [
        ("graph", "POST", 200),
        ("graph", "GET", 200),
        ("media", "GET", 200),
        ("media", "GET", 401),
        ("graph", "POST", 200),
        ("graph", "GET", 400),
    ]
    for e in ex:
        assert all(k.lower() != "authorization" for k, _ in e.request_headers)
        assert TOKEN not in json.dumps(e.request_headers)
        assert signature.group(1) not in e.url
        assert signature.group(1).encode() not in e.response_body
        assert e.started_at <= e.finished_at
    assert ex[0].request_body == sent_body
    assert json.loads(ex[0].response_body)["messages"][0]["id"].startswith("wamid.")
    assert ex[1].url == f"/v21.0/{MEDIA_ID}"
    assert b"hash=REDACTED" in ex[1].response_body
    assert ex[2].url.startswith(f"/whatsapp_business/attachments/?mid={MEDIA_ID}&ext=")
    assert ex[2].url.endswith("&hash=REDACTED")
    assert ex[2].response_body == b""
    assert ex[2].annotations["sha256"] == hashlib.sha256(BLOB).hexdigest()
    assert b"tiny upload" in ex[4].request_body
    assert json.loads(ex[3].response_body)["error"]["code"] == 190

    await journal.close()
    stored = list(sqlite_store.interactions("run"))
    assert len(stored) == len(ex)
    # The run keeps what the bot uploaded.
    assert sqlite_store.media("run", uploaded["id"]).size == len(b"tiny upload")


async def test_journal_omits_big_multipart_bodies(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    journal = Journal()
    _, base = await serve(journal=journal)
    big = b"x" * (2 << 20)
    status, _ = await upload(http, base, io.BytesIO(big), "application/pdf")
    assert status == 200
    [e] = journal.exchanges
    assert e.request_body == b""
    assert int(e.annotations["request_body_size"]) > len(big)


async def test_recorded_read_receipts_are_no_send_recordings(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgLabc"}
    record_send(sqlite_store, receipt, 200, {"success": True})
    _, base = await serve(
        GraphConfig(access_token=TOKEN, strict=True), store=sqlite_store, cassette=cassette
    )
    status, headers, err = await send(http, base, text("hi"))
    assert_graph_error(status, headers, err, 100, 400)
    assert "no recorded sends" in err["error"]["error_data"]["details"]


# -- switching the cassette, swapping journal and listener, activity ----------------------

OK_ANSWER = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": TO, "wa_id": TO}],
    "messages": [{"id": "wamid.HBgLrecorded"}],
}


async def test_use_cassette_switches_what_is_served_while_running(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    record_send(sqlite_store, text("hello"), 200, OK_ANSWER)
    sqlite_store.update_cassette(cassette, phone_number_ids=[PHONE_ID, "200200200"])
    graph, base = await serve(store=sqlite_store)  # a store for blobs, no cassette yet
    status, _, answer = await send(http, base, text("hello"))
    assert status == 200 and answer != OK_ANSWER and graph.unmatched == []
    assert (await send(http, base, text("x"), phone="200200200"))[0] == 400
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 400

    await graph.use_cassette(sqlite_store, cassette)
    assert (graph.store, graph.cassette) == (sqlite_store, cassette)
    assert (await send(http, base, text("hello")))[::2] == (200, OK_ANSWER)
    assert (await send(http, base, text("x"), phone="200200200"))[0] == 200
    assert len(graph.unmatched) == 1  # "x" has no recording
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 200

    # The same cassette again starts afresh: its answer is back, nothing is unmatched.
    earlier = graph.unmatched
    await graph.use_cassette(sqlite_store, cassette)
    assert graph.unmatched == [] and len(earlier) == 1
    assert (await send(http, base, text("hello")))[::2] == (200, OK_ANSWER)

    await graph.use_cassette(None, None)
    assert (graph.store, graph.cassette) == (None, None)
    status, _, answer = await send(http, base, text("hello"))
    assert status == 200 and answer != OK_ANSWER
    status, headers, answer = await send(http, base, text("x"), phone="200200200")
    assert_graph_error(status, headers, answer, 100, 400)
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 400


async def test_use_cassette_before_start_is_what_start_serves(
    http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    record_send(sqlite_store, text("hello"), 200, OK_ANSWER)
    graph = FakeGraph(GraphConfig(access_token=TOKEN))
    await graph.use_cassette(sqlite_store, cassette)
    base = await graph.start()
    try:
        assert (await send(http, base, text("hello")))[::2] == (200, OK_ANSWER)
    finally:
        await graph.stop()


async def test_the_last_cassette_switch_wins(
    serve: Serve, sqlite_store: CassetteStore, cassette: str
) -> None:
    graph, _ = await serve(store=sqlite_store, cassette=cassette)
    # The first switch reads its cassette in a thread; the second, to none, ends first.
    await asyncio.gather(graph.use_cassette(sqlite_store, cassette), graph.use_cassette(None, None))
    assert (graph.store, graph.cassette) == (None, None)


async def test_use_cassette_needs_a_store_for_a_name(serve: Serve) -> None:
    graph, _ = await serve()
    with pytest.raises(ValueError, match="needs a store"):
        await graph.use_cassette(None, CASSETTE)


async def test_journal_and_listener_are_read_per_request(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    first, second = Journal(), Journal()
    one, two = Listener(), Listener()
    graph, base = await serve(journal=first, listener=one)
    await send(http, base, text("one"))
    graph.journal, graph.listener = second, two
    await send(http, base, text("two"))
    graph.journal = graph.listener = None
    await send(http, base, text("three"))

    def bodies(journal: Journal) -> list[str]:
        return [json.loads(e.request_body)["text"]["body"] for e in journal.exchanges]

    assert (bodies(first), bodies(second)) == (["one"], ["two"])
    assert [s.body["text"]["body"] for s, _, _ in one.sends] == ["one"]
    assert [s.body["text"]["body"] for s, _, _ in two.sends] == ["two"]


async def test_activity_counts_the_requests_being_served(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    seen: list[tuple[int, float]] = []

    class Watch(Listener):
        def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
            seen.append((graph.in_flight, graph.last_activity))

    graph, base = await serve(GraphConfig(access_token=TOKEN, latency_ms=100), listener=Watch())
    assert graph.in_flight == 0
    idle_since = graph.last_activity
    results = await asyncio.gather(send(http, base, text("a")), send(http, base, text("b")))
    assert [status for status, _, _ in results] == [200, 200]
    # Both were in flight while the first was answered (each waits 100 ms first).
    assert max(n for n, _ in seen) == 2
    assert all(idle_since < at <= graph.last_activity for _, at in seen)
    assert graph.in_flight == 0

    # Refused and unroutable requests count as activity too, and end.
    before = graph.last_activity
    assert (await send(http, base, text("x"), headers={}))[0] == 401
    async with http.get(f"{base}/no/such/route", headers=AUTH) as resp:
        assert resp.status == 400
    assert graph.in_flight == 0 and graph.last_activity > before


async def test_bound_to_every_interface_it_is_reached_on_loopback(
    http: aiohttp.ClientSession,
) -> None:
    graph = FakeGraph(GraphConfig(access_token=TOKEN))
    base = await graph.start("0.0.0.0", 0)
    try:
        port = base.rsplit(":", 1)[1]
        assert base == f"http://0.0.0.0:{port}" and graph.local_url == f"http://127.0.0.1:{port}"
        status, _, answer = await send(http, graph.local_url, text("hi"))
        assert status == 200 and answer["messages"][0]["id"].startswith("wamid.")
    finally:
        await graph.stop()
    loopback = FakeGraph(GraphConfig(access_token=TOKEN))
    await loopback.start("127.0.0.1", 0)
    assert loopback.local_url is None  # its base URL already is reachable
    await loopback.stop()
