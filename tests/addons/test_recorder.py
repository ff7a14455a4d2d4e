"""The recording addon, tested the way mitmproxy tests its own (taddons, tflow, tutils)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions
from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from pseudowa.addons.flows import INCOMPLETE
from pseudowa.addons.recorder import Recorder
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks as w
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

APP_SECRET = "5f2b0a6f3c8e4d1a9b7c6e5d4f3a2b1c"
TOKEN = "EAAGm0PX4ZCpsBAKZCZBtestAccessToken1234567890"
VERIFY = "s3cret-verify-token"
ACCOUNT = w.BusinessAccount()
USER = "16505551234"
BOT = "http://127.0.0.1:8000/webhook"
WEBHOOK_LISTENER = "reverse:http://127.0.0.1:8000@9000"
MEDIA_LISTENER = "reverse:https://lookaside.fbsbx.com@8082"
MEDIA_ID = "1037543291543636"
MEDIA_URL = (
    f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}"
    "&source=getMedia&ext=1749416983&hash=ARnJzQx2wYQ1u6Nf_ZPqj6c3N&_nc_cat=103"
    "&oh=01_Q5AaIGXb7v&oe=6851A2B3"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
PHONE_ID = ACCOUNT.phone_number_id


# -- flows ------------------------------------------------------------------------------


def _headers(*pairs: tuple[str, str]) -> http.Headers:
    return http.Headers([(k.encode(), v.encode()) for k, v in pairs])


def _flow(
    url: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    status: int | None = 200,
    resp_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    resp_body: bytes = b"",
    mode: str | None = None,
) -> http.HTTPFlow:
    req = tutils.treq(method=method.encode(), headers=_headers(*headers), content=body)
    req.url = url
    resp = (
        tutils.tresp(status_code=status, headers=_headers(*resp_headers), content=resp_body)
        if status is not None
        else False
    )
    f = tflow.tflow(req=req, resp=resp)
    if mode is not None:
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
    return f


def webhook_flow(
    body: bytes, sig: str | None = "sign", *, secret: str = APP_SECRET
) -> http.HTTPFlow:
    headers = [("Content-Type", "application/json"), ("User-Agent", "facebookexternalua")]
    if sig == "sign":
        sig = signature.sign(secret, body)
    if sig is not None:
        headers += [
            (signature.HEADER, sig),
            (signature.LEGACY_HEADER, signature.sign_sha1(secret, body)),
        ]
    return _flow(
        BOT,
        method="POST",
        headers=tuple(headers),
        body=body,
        resp_headers=(("Content-Type", "text/plain"),),
        resp_body=b"EVENT_RECEIVED",
        mode=WEBHOOK_LISTENER,
    )


def graph_flow(
    path: str,
    body: bytes = b"",
    resp_body: bytes = b"{}",
    *,
    method: str | None = None,
    status: int = 200,
) -> http.HTTPFlow:
    method = method or ("POST" if body else "GET")
    headers = [("Authorization", f"Bearer {TOKEN}")]
    if body:
        headers.append(("Content-Type", "application/json"))
    return _flow(
        f"https://graph.facebook.com{path}",
        method=method,
        headers=tuple(headers),
        body=body,
        status=status,
        resp_body=resp_body,
    )


def media_flow(
    url: str = MEDIA_URL, data: bytes = JPEG, *, mode: str | None = MEDIA_LISTENER
) -> http.HTTPFlow:
    return _flow(
        url,
        headers=(("Authorization", f"Bearer {TOKEN}"), ("User-Agent", "curl/8.5")),
        resp_headers=(("Content-Type", "image/jpeg"), ("Content-Length", str(len(data)))),
        resp_body=data,
        mode=mode,
    )


def inbound_image(sha_b64: str, *, user: str = USER, name: str = "Zoë Ølsen") -> bytes:
    msg = w.message(
        "image",
        user,
        w.media_body("image", MEDIA_ID, "image/jpeg", sha_b64),
        wamid=new_wamid(user),
        timestamp="1749416383",
    )
    return w.dumps(w.inbound_webhook(ACCOUNT, msg, profile_name=name))


def text_webhook(user: str = USER) -> bytes:
    msg = w.message(
        "text", user, w.text_body("hello"), wamid=new_wamid(user), timestamp="1749416383"
    )
    return w.dumps(w.inbound_webhook(ACCOUNT, msg))


def send_body(to: str = USER) -> bytes:
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": "Yes, in blue."},
        }
    ).encode()


def send_answer(to: str, wamid: str) -> bytes:
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid}],
        }
    ).encode()


def metadata_body(url: str = MEDIA_URL, data: bytes = JPEG) -> bytes:
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "url": url,
            "mime_type": "image/jpeg",
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_size": str(len(data)),
            "id": MEDIA_ID,
        }
    ).encode()


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/r.db"


def configure(tctx, recorder: Recorder, db: str, **kw) -> None:
    options = dict(
        pseudowa_db=db,
        pseudowa_cassette="c",
        pseudowa_webhook_upstream=BOT,
        pseudowa_app_secret=APP_SECRET,
        pseudowa_secrets=[TOKEN, VERIFY],
    )
    options.update(kw)
    tctx.configure(recorder, **options)


def stored(db: str, name: str = "c") -> list[Exchange]:
    with CassetteStore.open(db) as store:
        return list(store.interactions(name))


def db_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.glob("r.db*"))


# -- options ----------------------------------------------------------------------------


def test_idle_without_a_cassette(tmp_path, db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, pseudowa_db=db)
        assert recorder.store is None
        recorder.requestheaders(graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
        assert not recorder.active_flows
    assert not list(tmp_path.iterdir())  # nothing opened, nothing created


async def test_mode_new_refuses_an_existing_cassette(db):
    with CassetteStore.open(db) as store:
        store.create_cassette("c")
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(
            exceptions.OptionsError, match="cassette c exists; use --mode append or overwrite"
        ):
            configure(tctx, recorder, db)
        assert recorder.store is None
        assert tctx.options.pseudowa_cassette == ""  # rolled back


async def test_modes_append_and_overwrite(db):
    async def record(mode: str, n: int) -> None:
        recorder = Recorder()
        with taddons.context(recorder) as tctx:
            configure(tctx, recorder, db, pseudowa_mode=mode)
            for _ in range(n):
                await tctx.cycle(recorder, graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
            await recorder.done()

    await record("new", 2)
    assert len(stored(db)) == 2
    await record("append", 1)
    assert [x.seq for x in stored(db)] == [0, 1, 2]
    await record("overwrite", 1)
    assert [x.seq for x in stored(db)] == [0]
    with CassetteStore.open(db) as store:
        history = store.history("c")
    assert [h.operation for h in history] == ["record"]
    assert history[0].arguments["mode"] == "overwrite"
    assert history[0].arguments["signature_checked"] is True
    assert APP_SECRET not in json.dumps(history[0].arguments)


class _ProxyServer:
    """Stands in for mitmproxy's proxyserver addon: listeners that did or did not bind."""

    name = "proxyserver"

    def __init__(self, *running: bool) -> None:
        self.servers = [SimpleNamespace(is_running=r) for r in running]


async def test_empty_cassette_of_a_session_that_never_served_is_deleted(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.master.addons.add(_ProxyServer(True, False))  # one listener failed to bind
        configure(tctx, recorder, db)
        with CassetteStore.open(db) as store:
            assert store.exists("c")
        recorder.running()
        await recorder.done()
    with CassetteStore.open(db) as store:
        assert not store.exists("c")
    # So a retry in mode new works.
    again = Recorder()
    with taddons.context(again) as tctx:
        configure(tctx, again, db)
        again.running()
        await tctx.cycle(again, graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
        await again.done()
    assert [x.kind for x in stored(db)] == ["graph"]


async def test_mitmproxy_stopped_before_running_deletes_the_empty_cassette(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await recorder.done()  # no `running`: mitmproxy never served
    with CassetteStore.open(db) as store:
        assert not store.exists("c")


@pytest.mark.parametrize("case", ["served", "written", "append", "overwrite-kept"])
async def test_cassettes_that_are_kept(db, case):
    if case in ("append", "overwrite-kept"):
        with CassetteStore.open(db) as store:
            store.create_cassette("c")
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        tctx.master.addons.add(_ProxyServer(True, True))
        mode = {"append": "append", "overwrite-kept": "overwrite"}.get(case, "new")
        configure(tctx, recorder, db, pseudowa_mode=mode)
        if case == "served":
            recorder.running()  # served, recorded nothing: an empty session is a session
        if case == "written":
            await tctx.cycle(recorder, graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
        await recorder.done()
    with CassetteStore.open(db) as store:
        assert store.exists("c")


async def test_a_cassette_emptied_behind_our_back_is_not_deleted_twice(db, caplog):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        with CassetteStore.open(db) as other:
            other.delete_cassette("c")
        with caplog.at_level(logging.WARNING):
            await recorder.done()
    assert "could not delete the empty cassette c" in caplog.text
    assert recorder.store is None


async def test_append_creates_a_missing_cassette(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_mode="append", pseudowa_source="sandbox")
        await recorder.done()
    with CassetteStore.open(db) as store:
        assert store.get_cassette("c").source == "sandbox"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pseudowa_mode": "replace"}, "invalid pseudowa_mode"),
        ({"pseudowa_source": "imported"}, "invalid pseudowa_source"),
        ({"pseudowa_webhook_upstream": "http://:80/x"}, "no host"),
        ({"pseudowa_graph_upstreams": ["https://graph.facebook.com:http"]}, "invalid port"),
        ({"pseudowa_media_rewrite": "http://127.0.0.1:8082/media"}, "without a path"),
        ({"pseudowa_cassette": "no/slashes"}, "invalid cassette name"),
    ],
)
def test_bad_options(db, options, message):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError, match=message):
            configure(tctx, recorder, db, **options)
        assert recorder.store is None


def test_a_text_file_is_no_store(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n")
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        with pytest.raises(exceptions.OptionsError, match="cannot open the cassette store"):
            configure(tctx, recorder, f"sqlite:///{path}")
    assert path.read_text() == "shopping list\n"


# -- webhooks ---------------------------------------------------------------------------


async def test_webhook_post_is_recorded_with_events_and_signature_state(tmp_path, db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        body = inbound_image(w.sha256_b64(JPEG))
        statuses = w.dumps(
            w.status_webhook(
                ACCOUNT,
                [
                    w.status("wamid.out1", "sent", USER, timestamp="1749416390"),
                    w.status("wamid.out1", "delivered", USER, timestamp="1749416391"),
                ],
            )
        )
        await tctx.cycle(recorder, webhook_flow(body))
        await tctx.cycle(recorder, webhook_flow(statuses, signature.forge(statuses)))
        await tctx.cycle(recorder, webhook_flow(text_webhook(), None))
        await recorder.done()

    x = stored(db)
    assert [e.kind for e in x] == ["webhook"] * 3
    assert [e.annotations["signature"] for e in x] == ["valid", "invalid", "absent"]
    assert x[0].method == "POST" and x[0].url == BOT
    assert x[0].request_body == body  # nothing to scrub: byte-identical
    assert x[0].response_status == 200 and x[0].response_body == b"EVENT_RECEIVED"
    names = [k.lower() for k, _ in x[0].request_headers]
    assert "x-hub-signature-256" not in names and "x-hub-signature" not in names
    assert "user-agent" in names
    with CassetteStore.open(db) as store:
        events = store.events("c")
        info = store.get_cassette("c")
    assert [(e.category, e.type) for e in events] == [
        ("message", "image"),
        ("status", "sent"),
        ("status", "delivered"),
        ("message", "text"),
    ]
    assert events[0].media_id == MEDIA_ID and events[0].media_sha256 == w.sha256_b64(JPEG)
    assert events[0].interaction_seq == 0 and events[3].interaction_seq == 2
    assert info.phone_number_ids == (PHONE_ID,)
    assert recorder.counts == {"webhook": 3}


async def test_webhook_signature_unchecked_without_app_secret(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_app_secret="")
        await tctx.cycle(recorder, webhook_flow(text_webhook()))
        await recorder.done()
    assert stored(db)[0].annotations["signature"] == "unchecked"


async def test_verify_handshake_is_recorded_without_the_token(tmp_path, db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_secrets=[])  # the token is learned from the URL
        f = _flow(
            f"{BOT}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={VERIFY}",
            resp_headers=(("Content-Type", "text/plain"),),
            resp_body=b"1158201444",
            mode=WEBHOOK_LISTENER,
        )
        await tctx.cycle(recorder, f)
        await recorder.done()
    (x,) = stored(db)
    assert x.kind == "webhook" and x.method == "GET"
    assert x.url == f"{BOT}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=REDACTED"
    assert x.response_body == b"1158201444"
    assert "signature" not in x.annotations
    assert VERIFY.encode() not in db_bytes(tmp_path)


# -- graph and media --------------------------------------------------------------------


async def test_graph_send_is_recorded_scrubbed(tmp_path, db):
    recorder = Recorder()
    seen: list[tuple[str, Exchange]] = []
    recorder.on_recorded = lambda kind, x: seen.append((kind, x))
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        wamid = new_wamid(USER)
        f = graph_flow(
            f"/v23.0/{PHONE_ID}/messages?access_token={TOKEN}",
            send_body(),
            send_answer(USER, wamid),
        )
        await tctx.cycle(recorder, f)
        await recorder.done()
    (x,) = stored(db)
    assert x.kind == "graph" and x.method == "POST"
    assert x.url == f"https://graph.facebook.com/v23.0/{PHONE_ID}/messages"
    assert x.request_body == send_body()
    assert json.loads(x.response_body)["messages"][0]["id"] == wamid
    assert "authorization" not in [k.lower() for k, _ in x.request_headers]
    assert x.started_at == f.request.timestamp_start
    assert x.finished_at == f.response.timestamp_end
    assert seen == [("graph", x)]
    with CassetteStore.open(db) as store:
        info = store.get_cassette("c")
    assert info.graph_api_version == "v23.0" and info.phone_number_ids == (PHONE_ID,)


async def test_secrets_never_reach_the_database(tmp_path, db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_secrets=[VERIFY])  # the token is learned
        exchange = graph_flow(
            f"/v23.0/oauth/access_token?grant_type=fb_exchange_token&client_id=1"
            f"&client_secret={APP_SECRET}&fb_exchange_token={TOKEN}",
            resp_body=b'{"access_token":"EAAnewLongLivedToken987","token_type":"bearer"}',
        )
        echo = graph_flow(
            f"/v23.0/{PHONE_ID}/messages",
            json.dumps(
                {
                    "to": USER,
                    "type": "text",
                    "text": {"body": f"debug {TOKEN} {APP_SECRET} {VERIFY}"},
                }
            ).encode(),
            resp_body=json.dumps({"error": {"message": f"bad token {TOKEN}"}}).encode(),
            status=400,
        )
        signed = text_webhook()
        for f in (exchange, echo, webhook_flow(signed), media_flow()):
            await tctx.cycle(recorder, f)
        await recorder.done()
    data = db_bytes(tmp_path)
    for secret in (
        TOKEN,
        APP_SECRET,
        VERIFY,
        "EAAnewLongLivedToken987",
        signature.sign(APP_SECRET, signed),
        "ARnJzQx2wYQ1u6Nf",
    ):
        assert secret.encode() not in data, secret
    assert b"Bearer" not in data
    x = stored(db)
    assert x[0].url == (
        "https://graph.facebook.com/v23.0/oauth/access_token?grant_type=fb_exchange_token"
        "&client_id=1&client_secret=REDACTED&fb_exchange_token=REDACTED"
    )
    assert json.loads(x[0].response_body) == {"token_type": "bearer"}
    assert b"debug REDACTED REDACTED REDACTED" in x[1].request_body


async def test_media_lookup_and_download(tmp_path, db, caplog):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(recorder, webhook_flow(inbound_image(w.sha256_b64(JPEG))))
        lookup = graph_flow(f"/v23.0/{MEDIA_ID}", resp_body=metadata_body())
        await tctx.cycle(recorder, lookup)
        assert recorder.media_ids[MEDIA_URL] == MEDIA_ID
        download = media_flow()
        await tctx.cycle(recorder, download)
        assert download.response.content == JPEG  # the bot got the bytes untouched
        await recorder.done()

    hook, meta, media = stored(db)
    assert meta.kind == "graph" and meta.annotations == {
        "media_id": MEDIA_ID,
        "mime_type": "image/jpeg",
    }
    assert json.loads(meta.response_body)["url"] == (
        f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}&source=getMedia"
    )
    assert media.kind == "media"
    assert (
        media.url
        == f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}&source=getMedia"
    )
    assert media.response_body == b""
    sha = hashlib.sha256(JPEG).hexdigest()
    assert media.annotations == {
        "media_id": MEDIA_ID,
        "media_sha256": sha,
        "media_size": str(len(JPEG)),
        "mime_type": "image/jpeg",
        "sha256": "match",
    }
    assert ("Content-Length", str(len(JPEG))) in media.response_headers
    with CassetteStore.open(db) as store:
        link = store.media("c", MEDIA_ID)
        assert (link.sha256, link.mime_type, link.size) == (sha, "image/jpeg", len(JPEG))
        assert store.read_media(sha) == JPEG
    assert recorder.counts == {"webhook": 1, "graph": 1, "media": 1}
    assert recorder.media_bytes == len(JPEG)
    assert "mismatch" not in caplog.text


async def test_media_mismatch_is_flagged(db, caplog):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(
            recorder, webhook_flow(inbound_image(w.sha256_b64(b"what Meta announced")))
        )
        await tctx.cycle(recorder, graph_flow(f"/v23.0/{MEDIA_ID}", resp_body=metadata_body()))
        with caplog.at_level(logging.WARNING):
            await tctx.cycle(recorder, media_flow(data=JPEG))
        await recorder.done()
    assert stored(db)[-1].annotations["sha256"] == "mismatch"
    assert f"media {MEDIA_ID}" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


async def test_media_without_any_announcement_is_unknown_and_keyed_by_mid(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(recorder, media_flow(mode=None))  # regular proxy mode
        await recorder.done()
    (x,) = stored(db)
    assert x.kind == "media" and x.annotations["sha256"] == "unknown"
    assert x.annotations["media_id"] == MEDIA_ID  # the `mid` of the URL
    with CassetteStore.open(db) as store:
        assert store.media("c", MEDIA_ID).size == len(JPEG)


async def test_expired_media_url_is_recorded_as_an_answer(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        f = media_flow()
        f.response.status_code = 404
        f.response.content = b"URL signature expired"
        await tctx.cycle(recorder, f)
        await recorder.done()
    (x,) = stored(db)
    assert x.response_status == 404 and x.response_body == b"URL signature expired"
    assert "sha256" not in x.annotations
    assert recorder.media_bytes == 0


async def test_media_url_rewrite(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_media_rewrite="http://127.0.0.1:8082")
        lookup = graph_flow(f"/v23.0/{MEDIA_ID}", resp_body=metadata_body())
        await tctx.cycle(recorder, lookup)
        # The bot is told to download through our media listener...
        rewritten = MEDIA_URL.replace("https://lookaside.fbsbx.com", "http://127.0.0.1:8082")
        assert json.loads(lookup.response.content)["url"] == rewritten
        assert lookup.response.headers["content-length"] == str(len(lookup.response.raw_content))
        assert recorder.media_ids[MEDIA_URL] == recorder.media_ids[rewritten] == MEDIA_ID
        # ...which forwards to Meta's host, where the flow is recognised as the download.
        await tctx.cycle(recorder, media_flow())
        await recorder.done()
    meta, media = stored(db)
    assert json.loads(meta.response_body)["url"].startswith("https://lookaside.fbsbx.com/")
    assert meta.annotations["media_url_rewritten"] == "http://127.0.0.1:8082"
    assert media.annotations["media_id"] == MEDIA_ID and media.annotations["sha256"] == "match"


async def test_download_url_handed_out_on_the_graph_host_is_media(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(
            tctx,
            recorder,
            db,
            pseudowa_source="sandbox",
            pseudowa_graph_upstreams=["http://127.0.0.1:8080"],
        )
        url = f"http://127.0.0.1:8080/media/download/{MEDIA_ID}"
        await tctx.cycle(
            recorder, _flow(f"http://127.0.0.1:8080/media/{MEDIA_ID}", resp_body=metadata_body(url))
        )
        await tctx.cycle(recorder, media_flow(url, mode=None))
        await recorder.done()
    assert [(x.kind, x.annotations.get("sha256")) for x in stored(db)] == [
        ("graph", None),
        ("media", "match"),
    ]


async def test_flows_are_classified_by_the_listener_they_came_through(db):
    """Bot, Graph and media upstreams all on 127.0.0.1: the listener tells them apart."""
    graph, media = "http://127.0.0.1:8080", "http://127.0.0.1:8081"
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(
            tctx,
            recorder,
            db,
            pseudowa_graph_upstreams=[graph],
            pseudowa_media_upstreams=[media],
            pseudowa_media_hosts=[],
        )
        graph_listener, media_listener = f"reverse:{graph}@9001", f"reverse:{media}@9002"
        send = _flow(
            f"{graph}/v23.0/{PHONE_ID}/messages",
            method="POST",
            headers=(("Authorization", f"Bearer {TOKEN}"),),
            body=send_body(),
            resp_body=send_answer(USER, "wamid.X"),
            mode=graph_listener,
        )
        # A download at a path that says nothing, with no look-up before it.
        download = media_flow(f"{media}/blobs/opaque-4711", mode=media_listener)
        hook = webhook_flow(text_webhook())  # through the webhook listener to 127.0.0.1:8000
        for f in (send, download, hook):
            await tctx.cycle(recorder, f)
        await recorder.done()
    assert [x.kind for x in stored(db)] == ["graph", "media", "webhook"]
    assert recorder.counts == {"graph": 1, "media": 1, "webhook": 1}
    with CassetteStore.open(db) as store:
        assert store.history("c")[0].arguments["media_upstreams"] == [media]


def test_bad_media_upstream(db):
    recorder = Recorder()
    with (
        taddons.context(recorder) as tctx,
        pytest.raises(exceptions.OptionsError, match="unsupported scheme"),
    ):
        configure(tctx, recorder, db, pseudowa_media_upstreams=["ftp://127.0.0.1"])


# -- pseudonyms -------------------------------------------------------------------------


async def test_pseudonymized_cassette_is_consistent(tmp_path, db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db, pseudowa_pseudonymize=True)
        out_wamid = new_wamid(USER)
        flows = [
            webhook_flow(inbound_image(w.sha256_b64(JPEG), name="Zoë Ølsen")),
            graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body(), send_answer(USER, out_wamid)),
            webhook_flow(
                w.dumps(
                    w.status_webhook(
                        ACCOUNT, [w.status(out_wamid, "delivered", USER, timestamp="1749416390")]
                    )
                )
            ),
            graph_flow(f"/v23.0/{MEDIA_ID}", resp_body=metadata_body()),
            media_flow(),
        ]
        for f in flows:
            await tctx.cycle(recorder, f)
        await recorder.done()

    fake = recorder.pseudonymizer.phone(USER)
    data = db_bytes(tmp_path)
    assert USER.encode() not in data and out_wamid.encode() not in data
    assert "Zoë".encode() not in data and b"Zo\\u00eb" not in data
    assert ACCOUNT.display_phone_number.encode() in data

    inbound, send, status, _, media = stored(db)
    assert json.loads(send.request_body)["to"] == fake
    answer = json.loads(send.response_body)
    assert answer["contacts"] == [{"input": fake, "wa_id": fake}]
    with CassetteStore.open(db) as store:
        events = store.events("c")
    assert events[0].sender == fake and events[1].recipient == fake
    assert events[1].wamid == answer["messages"][0]["id"]
    assert status.request_body.isascii()
    value = json.loads(inbound.request_body)["entry"][0]["changes"][0]["value"]
    assert value["contacts"][0]["profile"]["name"] == "User 1"
    assert value["metadata"] == ACCOUNT.metadata()
    assert media.annotations["sha256"] == "match"  # media ids are not personal data


async def test_append_with_pseudonyms_never_reuses_earlier_fakes(db):
    async def session(mode: str, user: str) -> str:
        recorder = Recorder()
        with taddons.context(recorder) as tctx:
            configure(tctx, recorder, db, pseudowa_mode=mode, pseudowa_pseudonymize=True)
            await tctx.cycle(recorder, webhook_flow(text_webhook(user)))
            await recorder.done()
        return recorder.pseudonymizer.phone(user)

    first = await session("new", USER)
    second = await session("append", "16505559876")
    # A fresh session starts its counter again, but skips the fakes already stored.
    assert (first, second) == ("15550000001", "15550000002")


# -- order, errors, failures ------------------------------------------------------------


async def test_cassette_order_is_completion_order(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        flows = [
            graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body(f"1650555{i:04d}"))
            for i in range(6)
        ]
        for f in flows:
            recorder.requestheaders(f)
            recorder.request(f)
        # Responses complete in reverse order of their requests, several at once.
        await asyncio.gather(*(recorder.response(f) for f in reversed(flows)))
        await recorder.done()
    x = stored(db)
    assert [json.loads(e.request_body)["to"] for e in x] == [
        f"1650555{i:04d}" for i in reversed(range(6))
    ]
    assert [e.seq for e in x] == list(range(6))
    assert [f.metadata["pseudowa_recorded"] for f in flows] == list(reversed(range(6)))


async def test_error_flows_are_recorded_with_the_error(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        f = graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body())
        f.response = None
        f.error = tflow.terr("Connection refused")
        await tctx.cycle(recorder, f)
        await recorder.done()
    (x,) = stored(db)
    assert x.error == "Connection refused" and x.response_status is None
    assert x.finished_at == f.error.timestamp


async def test_incomplete_flows_are_flushed_on_done(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        f = webhook_flow(text_webhook())
        f.response = None
        recorder.requestheaders(f)
        recorder.request(f)
        await recorder.done()
    (x,) = stored(db)
    assert x.error == INCOMPLETE
    assert recorder.store is None


async def test_unclassified_flows_are_not_recorded(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        recorder.running()  # mitmproxy served: the empty cassette stays
        f = tflow.tflow(resp=True)  # http://address:22/path
        await tctx.cycle(recorder, f)
        other = _flow("https://api.example.com/v1/things", resp_body=b"[]")
        await tctx.cycle(recorder, other)
        await recorder.done()
    assert stored(db) == []
    assert not recorder.counts
    assert f.response.content == b"message" and not f.error


async def test_a_failed_write_stops_the_recording(db, caplog):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(recorder, graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
        with CassetteStore.open(db) as other:
            other.delete_cassette("c")  # behind the recorder's back
        f = graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body())
        with caplog.at_level(logging.ERROR):
            await tctx.cycle(recorder, f)
        await asyncio.sleep(0)  # Master.shutdown() sets should_exit via call_soon_threadsafe
        assert tctx.master.should_exit.is_set()
        assert recorder.failed is not None
        assert (
            "recording stopped: could not write to the cassette store: no cassette named 'c'"
            in caplog.text
        )
        assert f.error is not None and f.error.msg == f.error.KILLED_MESSAGE  # not let through
        # Later traffic is not let through unrecorded either.
        later = graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body())
        await tctx.cycle(recorder, later)
        assert later.error is not None
        await recorder.done()
    assert recorder.counts == {"graph": 1}
    assert recorder.store is None


async def test_a_store_that_raises_stops_the_recording(db, caplog, monkeypatch):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)

        def broken(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(recorder.store, "put_media", broken)
        await tctx.cycle(recorder, media_flow())
        await asyncio.sleep(0)
        assert isinstance(recorder.failed, OSError)
        assert tctx.master.should_exit.is_set()
        assert "could not write to the cassette store: disk full" in caplog.text
        await recorder.done()
    assert recorder.media_bytes == 0


def _sends(n: int) -> list[http.HTTPFlow]:
    return [
        graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body(f"1650555{i:04d}")) for i in range(n)
    ]


def _count_appends(monkeypatch) -> list[int]:
    """Sizes of the transactions the writer appends in."""
    sizes: list[int] = []
    append = CassetteStore.append_many

    def counting(store, name, items, **kw):
        items = list(items)
        sizes.append(len(items))
        return append(store, name, items, **kw)

    monkeypatch.setattr(CassetteStore, "append_many", counting)
    return sizes


async def test_exchanges_finishing_together_share_a_transaction(db, monkeypatch):
    sizes = _count_appends(monkeypatch)
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        flows = _sends(6)
        await asyncio.gather(*(tctx.cycle(recorder, f) for f in flows))
        await tctx.cycle(recorder, (later := _sends(1)[0]))
        await recorder.done()
    assert sizes == [6, 1]
    assert [f.metadata["pseudowa_recorded"] for f in [*flows, later]] == list(range(7))
    assert [e.seq for e in stored(db)] == list(range(7))
    assert recorder.counts == {"graph": 7}


async def test_batches_keep_the_order_around_downloads_and_webhooks(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(recorder, graph_flow(f"/v23.0/{MEDIA_ID}", resp_body=metadata_body()))
        flows = [
            graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()),
            media_flow(),
            webhook_flow(inbound_image(w.sha256_b64(JPEG))),
            *_sends(2),
        ]
        await asyncio.gather(*(tctx.cycle(recorder, f) for f in flows))
        await recorder.done()
    x = stored(db)
    assert [e.kind for e in x] == ["graph", "graph", "media", "webhook", "graph", "graph"]
    assert x[2].annotations["sha256"] == "match" and x[2].response_body == b""
    with CassetteStore.open(db) as store:
        (event,) = store.events("c")
    assert event.interaction_seq == 3 and event.media_id == MEDIA_ID
    assert [f.metadata["pseudowa_recorded"] for f in flows] == [1, 2, 3, 4, 5]


async def test_a_failed_batch_kills_its_flows_and_all_queued_after(db, monkeypatch, caplog):
    calls = []

    def broken(store, name, items, **kw):
        calls.append(len(list(items)))
        raise StoreError("disk full")

    monkeypatch.setattr(CassetteStore, "append_many", broken)
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        recorder.running()
        flows = _sends(3)
        await asyncio.gather(*(tctx.cycle(recorder, f) for f in flows))
        assert calls == [3]  # one attempt for the batch, none for each flow after it
        assert all(f.error is not None and f.error.msg == f.error.KILLED_MESSAGE for f in flows)
        assert all("pseudowa_recorded" not in f.metadata for f in flows)
        assert (
            caplog.text.count("recording stopped: could not write to the cassette store: disk full")
            == 1
        )
        await asyncio.sleep(0)
        assert tctx.master.should_exit.is_set()
        later = _sends(1)[0]
        await tctx.cycle(recorder, later)
        assert later.error is not None and calls == [3]
        await recorder.done()
    assert stored(db) == [] and not recorder.counts


async def test_exchanges_queued_before_a_scrubbing_failure_are_still_written(db, monkeypatch):
    recorder = Recorder()
    prepare = recorder._prepare_write
    flows = _sends(3)

    def fragile(flow, kind, **kw):
        if flow is flows[2]:
            raise RuntimeError("scrubber bug")
        return prepare(flow, kind, **kw)

    monkeypatch.setattr(recorder, "_prepare_write", fragile)
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await asyncio.gather(*(tctx.cycle(recorder, f) for f in flows))
        await recorder.done()
    assert isinstance(recorder.failed, RuntimeError)
    assert [f.metadata.get("pseudowa_recorded") for f in flows] == [0, 1, None]
    assert flows[2].error is not None and flows[0].error is None
    assert len(stored(db)) == 2


async def test_done_waits_for_queued_writes(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        flows = _sends(4)
        for f in flows:
            recorder.requestheaders(f)
        hooks = [asyncio.ensure_future(recorder.response(f)) for f in flows]
        await asyncio.sleep(0)  # queued, not written yet
        await recorder.done()
        await asyncio.gather(*hooks)
    assert [e.seq for e in stored(db)] == [0, 1, 2, 3]
    assert recorder.store is None and recorder._writer is None


async def test_unfinished_counts_flows_until_written(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        flows = _sends(3)
        for f in flows:
            recorder.requestheaders(f)
        assert recorder.unfinished == 3
        hooks = [asyncio.ensure_future(recorder.response(f)) for f in flows[:2]]
        await asyncio.sleep(0)  # taken, queued: still unfinished
        assert recorder.unfinished == 3
        await asyncio.gather(*hooks)
        assert recorder.unfinished == 1
        flows[2].response = None
        await recorder.done()  # the last one is flushed as incomplete
        assert recorder.unfinished == 0
    assert [x.error for x in stored(db)] == [None, None, INCOMPLETE]


async def test_on_recorded_errors_do_not_stop_recording(db, caplog):
    recorder = Recorder()

    def explode(kind, exchange):
        raise RuntimeError("printer on fire")

    recorder.on_recorded = explode
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        await tctx.cycle(recorder, graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body()))
        await recorder.done()
    assert recorder.failed is None and recorder.counts == {"graph": 1}
    assert "on_recorded callback failed" in caplog.text


async def test_gzip_bodies_are_stored_decoded(db):
    recorder = Recorder()
    with taddons.context(recorder) as tctx:
        configure(tctx, recorder, db)
        f = graph_flow(f"/v23.0/{PHONE_ID}/messages", send_body())
        f.response.headers["content-encoding"] = "gzip"
        f.response.content = send_answer(USER, "wamid.X")  # encodes
        assert f.response.raw_content != send_answer(USER, "wamid.X")
        await tctx.cycle(recorder, f)
        await recorder.done()
    (x,) = stored(db)
    assert x.response_body == send_answer(USER, "wamid.X")
    names = {k.lower(): v for k, v in x.response_headers}
    assert "content-encoding" not in names
    assert names["content-length"] == str(len(x.response_body))
