"""A small WhatsApp Cloud API bot to copy: verify, check signatures, dedupe, reply, fetch media.

Run it against Meta, or against pseudowa's fake Graph API::

    WA_GRAPH_URL=https://graph.facebook.com WA_TOKEN=... WA_APP_SECRET=... \\
    WA_VERIFY_TOKEN=... python -m pseudowa.proxy.examples.example_bot --port 8000

or, keeping Meta's URLs, through `pseudowa replay ... --proxy-port 8093` with
HTTPS_PROXY=http://127.0.0.1:8093 SSL_CERT_FILE=~/.mitmproxy/mitmproxy-ca-cert.pem.

What it does, per inbound message (each wamid once): text -> "echo: <body>" quoting the
message, and mark it read; "menu" -> two reply buttons; a button or list choice ->
"you chose <id>"; media -> fetch it, check its sha256, say so; location -> "nice place";
reaction -> nothing; anything else -> "unsupported". Statuses are logged.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from pseudowa.proxy.contract import signature

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")


@dataclass(frozen=True)
class BotConfig:
    graph_base_url: str  # https://graph.facebook.com, or a fake's URL
    access_token: str
    app_secret: str  # signs webhooks (X-Hub-Signature-256)
    verify_token: str  # what you typed in the App Dashboard for the GET handshake
    phone_number_id: str = "106540352242922"
    api_version: str = "v23.0"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BotConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            graph_base_url=env.get("WA_GRAPH_URL", "https://graph.facebook.com"),
            access_token=env["WA_TOKEN"],
            app_secret=env["WA_APP_SECRET"],
            verify_token=env["WA_VERIFY_TOKEN"],
            phone_number_id=env.get("WA_PHONE_NUMBER_ID", cls.phone_number_id),
            api_version=env.get("WA_API_VERSION", cls.api_version),
        )


@dataclass(frozen=True)
class MediaFetch:
    media_id: str
    mime_type: str
    size: int
    sha256_ok: bool
    sha256_hex: str  # of the bytes downloaded


class Bot:
    """Webhook handlers plus what they did, kept in memory for tests and curious users."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.session: aiohttp.ClientSession | None = None
        self.seen: set[str] = set()  # wamids processed; a real bot keeps these in a database
        self.duplicates: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self.media: list[MediaFetch] = []
        self.replies: list[dict[str, Any]] = []  # message bodies sent (not mark-as-read)
        self.sent: list[str] = []  # wamids Graph gave our replies
        self.reply_errors: list[int | None] = []  # Graph error codes of failed sends
        self.rejected_signatures = 0
        self.log: list[str] = []

    # -- HTTP handlers -------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """GET /webhook: echo hub.challenge as plain text when the verify token matches."""
        q = request.query
        if (
            q.get("hub.mode") == "subscribe"
            and q.get("hub.verify_token") == self.config.verify_token
        ):
            self.log.append("verified handshake")
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        self.log.append("handshake rejected")
        return web.Response(status=403)

    async def receive(self, request: web.Request) -> web.Response:
        """POST /webhook: check the signature over the raw bytes, process, then answer.

        This bot processes before answering, which keeps it simple and deterministic.
        Production bots often answer 200 at once and process from a queue, because
        Meta expects a quick answer.
        """
        body = await request.read()  # the raw bytes: parsing first would break the HMAC
        if not signature.verify(
            self.config.app_secret, body, request.headers.get(signature.HEADER)
        ):
            self.rejected_signatures += 1
            self.log.append("webhook signature invalid, rejected")
            return web.Response(status=401)
        self.log.append("webhook signed OK")
        try:
            payload = json.loads(body)
        except ValueError:
            self.log.append("webhook body is not JSON")
            return web.Response(status=400)
        try:
            await self.handle(payload)
        except Exception as e:  # answer 500 so Meta delivers it again later
            self.log.append(f"processing failed: {e!r}")
            return web.Response(status=500)
        return web.Response(status=200)  # also when a reply failed: a retry would not help

    # -- processing ----------------------------------------------------------------------

    async def handle(self, payload: dict[str, Any]) -> None:
        for entry in payload.get("entry", []):
            for change in entry.get("changes", []):
                value = change.get("value", {})
                for status in value.get("statuses", []):
                    codes = [e.get("code") for e in status.get("errors", [])]
                    self.statuses.append(
                        {"id": status["id"], "status": status["status"], "errors": codes}
                    )
                    failure = "".join(f" (#{c})" for c in codes)
                    self.log.append(f"status {status['id']} {status['status']}{failure}")
                for msg in value.get("messages", []):
                    wamid = msg["id"]
                    if wamid in self.seen:  # Meta retries and duplicates; handle each once
                        self.duplicates.append(wamid)
                        self.log.append(f"duplicate {wamid} ignored")
                        continue
                    self.seen.add(wamid)
                    try:
                        await self.on_message(msg)
                    except BaseException:
                        # Not handled: let Meta's retry through. (At-least-once: a message
                        # that failed after its reply went out is answered twice.)
                        self.seen.discard(wamid)
                        raise

    async def on_message(self, msg: dict[str, Any]) -> None:
        kind, wamid = msg["type"], msg["id"]
        if kind == "text":
            await self.mark_read(wamid)
            text = msg["text"]["body"]
            if text.strip().lower() == "menu":
                await self.reply(
                    msg,
                    "interactive",
                    {
                        "type": "button",
                        "body": {"text": "What would you like?"},
                        "action": {
                            "buttons": [
                                {"type": "reply", "reply": {"id": "opt-news", "title": "News"}},
                                {"type": "reply", "reply": {"id": "opt-help", "title": "Help"}},
                            ]
                        },
                    },
                )
            else:
                await self.reply_text(msg, f"echo: {text}")
        elif kind == "interactive":
            choice = msg["interactive"].get(msg["interactive"]["type"], {})
            await self.reply_text(msg, f"you chose {choice.get('id')}")
        elif kind in MEDIA_KINDS:
            fetched = await self.fetch_media(kind, msg[kind])
            if fetched is None:
                await self.reply_text(msg, f"sorry, I could not fetch your {kind}")
            else:
                verdict = "ok" if fetched.sha256_ok else "MISMATCH"
                await self.reply_text(
                    msg, f"got your {kind} ({fetched.size} bytes, sha256 {verdict})"
                )
        elif kind == "location":
            await self.reply_text(msg, "nice place")
        elif kind == "reaction":
            reaction = msg["reaction"]
            self.log.append(
                f"reaction {reaction.get('emoji') or '(removed)'} on {reaction.get('message_id')}"
            )
        else:
            await self.reply_text(msg, "unsupported")

    # -- Graph API calls -----------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.config.graph_base_url.rstrip('/')}/{self.config.api_version}/{path}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.access_token}"}

    async def fetch_media(self, kind: str, obj: dict[str, Any]) -> MediaFetch | None:
        """GET /{media-id} for a short-lived URL, download it, check both sha256 forms."""
        assert self.session is not None
        media_id = obj["id"]
        async with self.session.get(self.url(media_id), headers=self.auth) as resp:
            meta = await _json(resp)
        if resp.status != 200 or "url" not in meta:
            self.log.append(f"{kind} {media_id} lookup failed ({_describe(resp.status, meta)})")
            return None
        async with self.session.get(
            meta["url"], headers=self.auth
        ) as resp:  # token needed here too
            data = await resp.read()
        if resp.status != 200:
            self.log.append(f"{kind} {media_id} download failed (HTTP {resp.status})")
            return None
        digest = hashlib.sha256(data)
        ok = base64.b64encode(digest.digest()).decode() == obj.get("sha256")  # webhook: base64
        if meta.get("sha256"):
            ok = ok and digest.hexdigest() == meta["sha256"]  # metadata: hex
        mime = meta.get("mime_type") or obj.get("mime_type", "")
        fetched = MediaFetch(media_id, mime, len(data), ok, digest.hexdigest())
        self.media.append(fetched)
        self.log.append(
            f"{kind} {media_id} fetched: {len(data)} B {mime}, "
            f"sha256 {'matches' if ok else 'MISMATCH'}"
        )
        return fetched

    async def reply_text(self, msg: dict[str, Any], text: str) -> None:
        await self.reply(msg, "text", {"body": text})

    async def reply(self, msg: dict[str, Any], kind: str, content: dict[str, Any]) -> None:
        """Send a message to the sender, quoting the message it answers."""
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": msg["from"],
            "context": {"message_id": msg["id"]},
            "type": kind,
            kind: content,
        }
        self.replies.append(body)
        status, answer = await self.post_message(body)
        if status == 200:
            self.sent.append(answer["messages"][0]["id"])
            self.log.append(f"reply sent {self.sent[-1]}")
        else:  # a Graph error is an answer, not a crash: log it and carry on
            self.reply_errors.append((answer.get("error") or {}).get("code"))
            self.log.append(f"reply failed ({_describe(status, answer)})")

    async def mark_read(self, wamid: str) -> None:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        status, answer = await self.post_message(body)
        self.log.append(
            f"marked {wamid} read"
            if status == 200
            else f"mark-as-read failed ({_describe(status, answer)})"
        )

    async def post_message(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert self.session is not None
        path = f"{self.config.phone_number_id}/messages"
        async with self.session.post(self.url(path), json=body, headers=self.auth) as resp:
            return resp.status, await _json(resp)


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The response's JSON object, or {} (a proxy's HTML error page is not a crash)."""
    try:
        answer = await resp.json(content_type=None)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _describe(status: int, answer: dict[str, Any]) -> str:
    """`#131000` for a Graph error envelope, else the HTTP status."""
    code = (answer.get("error") or {}).get("code")
    return f"#{code}" if code is not None else f"HTTP {status}"


BOT_KEY = web.AppKey("bot", Bot)


def make_app(config: BotConfig) -> web.Application:
    app = web.Application()
    bot = app[BOT_KEY] = Bot(config)

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        # trust_env: HTTPS_PROXY / NO_PROXY are honoured, as a bot behind a proxy (or
        # replayed through `pseudowa replay --proxy-port`) needs. Certificates are checked
        # against the default trust store, which SSL_CERT_FILE replaces.
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            bot.session = session
            yield
            bot.session = None

    app.cleanup_ctx.append(client_session)
    app.router.add_get("/webhook", bot.verify)
    app.router.add_post("/webhook", bot.receive)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        config = BotConfig.from_env()
    except KeyError as e:
        parser.error(f"environment variable {e.args[0]} is not set")
    web.run_app(make_app(config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
