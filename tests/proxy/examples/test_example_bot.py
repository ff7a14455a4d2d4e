"""The bundled example bot, driven by signed webhooks, talking to a tiny in-test Graph API.

Both servers are real (127.0.0.1, port 0). Every webhook sent is first validated against
Meta's OpenAPI schema, and the fake Graph checks the bot's sends with contract.outbound.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi import validate

from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.errors import bad_token
from pseudowa.proxy.contract.errors import unknown_object
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import Bot
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import main
from pseudowa.proxy.examples.example_bot import make_app

TOKEN = "EAAG-test-token"
APP_SECRET = "app-secret-123"
VERIFY_TOKEN = "verify-me"
ACCOUNT = wh.BusinessAccount()
USER = "16505551234"
FAILING_USER = "16505550000"  # the fake Graph answers 131000 for sends to this number
PNG = bytes(range(256)) * 8  # 2048 bytes


# -- a tiny fake Graph API ---------------------------------------------------------------


@dataclass
class FakeGraph:
    base_url: str = ""
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # id -> (bytes, mime)
    sends: list[dict[str, Any]] = field(default_factory=list)  # message bodies accepted
    reads: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.bearer])
        app.router.add_get("/dl/{media_id}", self.download)
        app.router.add_get("/{version}/{media_id}", self.media_metadata)
        app.router.add_post("/{version}/{phone_number_id}/messages", self.messages)
        return app

    @web.middleware
    async def bearer(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error_response(bad_token())
        return await handler(request)

    async def media_metadata(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        if media_id not in self.media:
            return error_response(unknown_object(media_id))
        data, mime = self.media[media_id]
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/dl/{media_id}",
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),
                "id": media_id,
            }
        )

    async def download(self, request: web.Request) -> web.Response:
        data, mime = self.media[request.match_info["media_id"]]
        return web.Response(body=data, content_type=mime)

    async def messages(self, request: web.Request) -> web.Response:
        try:
            parsed = parse_send(await request.read())
        except GraphError as e:
            return error_response(e)
        if isinstance(parsed, MarkRead):
            self.reads.append(parsed.message_id)
            answer: dict[str, Any] = {"success": True}
            validate("MarkMessageResponsePayload", answer)
            return web.json_response(answer)
        if parsed.wa_id == FAILING_USER:
            return error_response(GraphError(131000))
        self.sends.append(parsed.body)
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": parsed.to, "wa_id": parsed.wa_id}],
            "messages": [{"id": new_wamid(parsed.wa_id)}],
        }
        validate("MessageResponsePayload", answer)
        return web.json_response(answer)


def error_response(error: GraphError) -> web.Response:
    envelope = error.envelope()
    validate("GraphAPIError", envelope)
    return web.json_response(envelope, status=error.http_status)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@dataclass
class Harness:
    graph: FakeGraph
    bot: Bot
    bot_url: str
    client: aiohttp.ClientSession

    async def deliver(
        self, payload: dict[str, Any], *, header: str | None = "sign", body: bytes | None = None
    ) -> int:
        """POST a webhook the way Meta does: schema-valid, compact, signed over the bytes."""
        validate("WebhookPayload", payload)
        raw = wh.dumps(payload) if body is None else body
        headers = {"Content-Type": "application/json"}
        if header == "sign":
            headers[signature.HEADER] = signature.sign(APP_SECRET, raw)
        elif header is not None:
            headers[signature.HEADER] = header
        async with self.client.post(f"{self.bot_url}/webhook", data=raw, headers=headers) as resp:
            return resp.status

    async def say(self, msg: dict[str, Any]) -> int:
        return await self.deliver(wh.inbound_webhook(ACCOUNT, msg))

    async def handshake(self, **params: str) -> tuple[int, str, str]:
        async with self.client.get(f"{self.bot_url}/webhook", params=params) as resp:
            return resp.status, await resp.text(), resp.content_type


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    graph = FakeGraph()
    graph_runner, graph.base_url = await serve(graph.app())
    app = make_app(
        BotConfig(
            graph.base_url, TOKEN, APP_SECRET, VERIFY_TOKEN, phone_number_id=ACCOUNT.phone_number_id
        )
    )
    bot_runner, bot_url = await serve(app)
    async with aiohttp.ClientSession() as client:
        yield Harness(graph, app[BOT_KEY], bot_url, client)
    await bot_runner.cleanup()
    await graph_runner.cleanup()


def text(body: str, sender: str = USER) -> dict[str, Any]:
    return wh.message("text", sender, wh.text_body(body))


def image(media_id: str, data: bytes) -> dict[str, Any]:
    return wh.message(
        "image", USER, wh.media_body("image", media_id, "image/png", wh.sha256_b64(data))
    )


def reply_texts(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sends if s["type"] == "text"]


# -- handshake ---------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge_as_plain_text(h: Harness) -> None:
    status, body, ctype = await h.handshake(
        **{"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN}
    )
    assert (status, body, ctype) == (200, "1158201444", "text/plain")
    assert h.bot.log == ["verified handshake"]


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"},
        {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": VERIFY_TOKEN},
        {"hub.challenge": "1"},
    ],
)
async def test_handshake_with_wrong_token_or_mode_is_forbidden(
    h: Harness, params: dict[str, str]
) -> None:
    status, body, _ = await h.handshake(**params)
    assert status == 403 and body != "1"


# -- messages ----------------------------------------------------------------------------


async def test_text_is_echoed_as_a_quoted_reply_and_marked_read(h: Harness) -> None:
    msg = text("Does it come in another color? äöå 👋")  # non-ASCII: signed in escaped form
    assert await h.say(msg) == 200
    (reply,) = h.graph.sends
    assert reply["to"] == USER and reply["type"] == "text"
    assert reply["text"]["body"] == "echo: Does it come in another color? äöå 👋"
    assert reply["context"] == {"message_id": msg["id"]}
    assert h.graph.reads == [msg["id"]]
    assert h.bot.replies == [reply] and h.bot.seen == {msg["id"]}
    assert h.bot.log[0] == "webhook signed OK"
    assert h.bot.log[-1] == f"reply sent {h.bot.sent[0]}" and h.bot.sent[0].startswith("wamid.")


async def test_menu_then_button_and_list_choices(h: Harness) -> None:
    await h.say(text("menu"))
    (menu,) = h.graph.sends
    assert menu["type"] == "interactive" and menu["interactive"]["type"] == "button"
    buttons = [b["reply"]["id"] for b in menu["interactive"]["action"]["buttons"]]
    assert buttons == ["opt-news", "opt-help"]
    context = {"from": ACCOUNT.display_phone_number, "id": h.bot.sent[0]}
    assert (
        await h.say(
            wh.message(
                "interactive", USER, wh.button_reply_body("opt-news", "News"), context=context
            )
        )
        == 200
    )
    assert (
        await h.say(
            wh.message(
                "interactive", USER, wh.list_reply_body("row-2", "Row 2", "d"), context=context
            )
        )
        == 200
    )
    assert reply_texts(h.graph) == ["you chose opt-news", "you chose row-2"]


async def test_image_is_fetched_and_its_sha256_checked(h: Harness) -> None:
    h.graph.media["1003383421387256"] = (PNG, "image/png")
    assert await h.say(image("1003383421387256", PNG)) == 200
    (fetched,) = h.bot.media
    assert fetched.media_id == "1003383421387256" and fetched.mime_type == "image/png"
    assert fetched.size == 2048 and fetched.sha256_ok
    assert fetched.sha256_hex == hashlib.sha256(PNG).hexdigest()
    assert "image 1003383421387256 fetched: 2048 B image/png, sha256 matches" in h.bot.log
    assert reply_texts(h.graph) == ["got your image (2048 bytes, sha256 ok)"]
    assert "GET /dl/1003383421387256" in h.graph.requests  # downloaded with the Bearer token


async def test_image_with_wrong_sha256_is_reported(h: Harness) -> None:
    h.graph.media["42"] = (PNG, "image/png")
    assert await h.say(image("42", b"other bytes")) == 200
    assert [m.sha256_ok for m in h.bot.media] == [False]
    assert "image 42 fetched: 2048 B image/png, sha256 MISMATCH" in h.bot.log
    assert reply_texts(h.graph) == ["got your image (2048 bytes, sha256 MISMATCH)"]


async def test_other_media_kinds_and_unknown_media(h: Harness) -> None:
    ogg = b"OggS" + bytes(100)
    h.graph.media["7"] = (ogg, "audio/ogg")
    audio = wh.media_body("audio", "7", "audio/ogg; codecs=opus", wh.sha256_b64(ogg), voice=True)
    assert await h.say(wh.message("audio", USER, audio)) == 200
    sticker = wh.media_body("sticker", "404", "image/webp", wh.sha256_b64(b"x"), animated=False)
    assert await h.say(wh.message("sticker", USER, sticker)) == 200  # Graph: no such media
    assert reply_texts(h.graph) == [
        "got your audio (104 bytes, sha256 ok)",
        "sorry, I could not fetch your sticker",
    ]
    assert "sticker 404 lookup failed (#100)" in h.bot.log


async def test_location_reaction_and_unsupported(h: Harness) -> None:
    first = text("hi")
    await h.say(first)
    await h.say(wh.message("location", USER, wh.location_body(37.44, -122.16, "Philz")))
    await h.say(wh.message("reaction", USER, wh.reaction_body(first["id"], "👍")))
    await h.say(
        wh.message("unsupported", USER, None) | {"errors": [GraphError(131051).status_error()]}
    )
    assert reply_texts(h.graph) == ["echo: hi", "nice place", "unsupported"]
    assert f"reaction 👍 on {first['id']}" in h.bot.log


async def test_duplicate_wamid_is_processed_once(h: Harness) -> None:
    msg = text("once")
    assert await h.say(msg) == 200
    assert await h.say(msg) == 200  # Meta's retry
    batch = wh.merge([wh.inbound_webhook(ACCOUNT, msg), wh.inbound_webhook(ACCOUNT, text("new"))])
    assert await h.deliver(batch) == 200  # a batch repeating it
    assert reply_texts(h.graph) == ["echo: once", "echo: new"]
    assert h.bot.duplicates == [msg["id"], msg["id"]]
    assert f"duplicate {msg['id']} ignored" in h.bot.log


async def test_statuses_are_logged(h: Harness) -> None:
    sent, failed = new_wamid(USER), new_wamid(USER)
    payload = wh.status_webhook(
        ACCOUNT,
        [
            wh.status(sent, "delivered", USER),
            wh.status(failed, "failed", USER, error=GraphError(131047)),
        ],
    )
    assert await h.deliver(payload) == 200
    assert h.bot.statuses == [
        {"id": sent, "status": "delivered", "errors": []},
        {"id": failed, "status": "failed", "errors": [131047]},
    ]
    assert f"status {sent} delivered" in h.bot.log
    assert f"status {failed} failed (#131047)" in h.bot.log
    assert h.graph.requests == []


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "forged", "wrong-secret", "mutated", "sha1-only"])
async def test_bad_signature_is_rejected_and_nothing_processed(h: Harness, case: str) -> None:
    payload = wh.inbound_webhook(ACCOUNT, text("hi"))
    raw = wh.dumps(payload)
    header, body = {
        "missing": (None, None),
        "forged": (signature.forge(raw), None),
        "wrong-secret": (signature.sign("not-the-secret", raw), None),
        "mutated": (signature.sign(APP_SECRET, raw), raw.replace(b'"hi"', b'"ho"')),
        "sha1-only": ("sha1=" + hashlib.sha1(raw).hexdigest(), None),
    }[case]
    assert await h.deliver(payload, header=header, body=body) == 401
    assert h.bot.rejected_signatures == 1
    assert h.bot.seen == set() and h.graph.requests == [] and h.bot.replies == []


async def test_graph_error_on_reply_is_logged_and_acknowledged(h: Harness) -> None:
    assert await h.say(text("hello", sender=FAILING_USER)) == 200
    assert h.bot.reply_errors == [131000] and h.bot.sent == []
    assert h.bot.log[-1] == "reply failed (#131000)"
    assert await h.say(text("still alive")) == 200  # the bot carries on
    assert reply_texts(h.graph) == ["echo: still alive"]


async def test_unexpected_failure_answers_500_and_the_retry_is_processed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = h.bot.on_message

    async def flaky(msg: dict[str, Any]) -> None:
        monkeypatch.setattr(h.bot, "on_message", original)
        raise RuntimeError("database down")

    monkeypatch.setattr(h.bot, "on_message", flaky)
    msg = text("retry me")
    assert await h.say(msg) == 500  # Meta will retry
    assert await h.say(msg) == 200  # ... and the retry is not taken for a duplicate
    assert reply_texts(h.graph) == ["echo: retry me"] and h.bot.duplicates == []


# -- configuration -----------------------------------------------------------------------


def test_config_from_env() -> None:
    config = BotConfig.from_env(
        {
            "WA_GRAPH_URL": "http://127.0.0.1:9",
            "WA_TOKEN": "t",
            "WA_APP_SECRET": "s",
            "WA_VERIFY_TOKEN": "v",
        }
    )
    assert config == BotConfig("http://127.0.0.1:9", "t", "s", "v", "106540352242922", "v23.0")
    assert (
        BotConfig.from_env(
            {
                "WA_TOKEN": "t",
                "WA_APP_SECRET": "s",
                "WA_VERIFY_TOKEN": "v",
                "WA_PHONE_NUMBER_ID": "1",
            }
        ).graph_base_url
        == "https://graph.facebook.com"
    )


def test_main_without_env_explains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("WA_TOKEN", "WA_APP_SECRET", "WA_VERIFY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--port", "0"])
    assert exc.value.code == 2 and "WA_TOKEN" in capsys.readouterr().err
