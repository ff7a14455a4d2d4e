"""The replay harness the sandbox and mutation tests share: the real example bot, every
webhook it receives checked against Meta's WebhookPayload schema, and one sandbox per
replay whose bound Graph URL the bot is pointed at (no port is guessed beforehand)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from openapi import validate

from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import Bot
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import make_app
from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.replay import ReplayReport
from pseudowa.proxy.sandbox.sandbox import Sandbox
from pseudowa.storage.store import CassetteStore

TOKEN = "pseudowa-access-token"
SECRET = "pseudowa-app-secret"
VERIFY = "pseudowa-verify-token"
RECEIVED = web.AppKey("received", list[bytes])


@web.middleware
async def validate_webhooks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every webhook the sandbox emits must satisfy Meta's WebhookPayload schema."""
    if request.method == "POST":
        body = await request.read()
        validate("WebhookPayload", json.loads(body))
        request.app[RECEIVED].append(body)
    return await handler(request)


@dataclass
class Harness:
    store: CassetteStore
    bot_url: str
    app: web.Application
    graph_url: str = ""  # of the last sandbox

    @property
    def bot(self) -> Bot:
        return self.app[BOT_KEY]

    @property
    def received(self) -> list[bytes]:
        """Webhook bodies the bot received since the last forget()."""
        return self.app[RECEIVED]

    async def replay(
        self, name: str, *, on_line: Callable[[str], None] | None = None, **options: Any
    ) -> ReplayReport:
        """One replay in a sandbox of its own; the bot is pointed at its Graph URL, which is
        known once the sandbox is bound. A bot kept on Meta's https URL (proxy tests) stays."""
        config = SandboxConfig(bot_url=self.bot_url, **{"speed": 0, "quiet_s": 0.3, **options})
        async with Sandbox(config, store=self.store, on_line=on_line) as sb:
            self.graph_url = sb.graph_url
            if not self.bot.config.graph_base_url.startswith("https://"):
                self.bot.config = dataclasses.replace(self.bot.config, graph_base_url=sb.graph_url)
            return await sb.replay(name)

    async def record(self, seed: str) -> str:
        """Replay a seed against a fresh bot state; the run's journal is the recording."""
        self.forget()
        report = await self.replay(seed)
        assert report.journal is not None
        self.forget()
        return report.journal

    def forget(self) -> None:
        """Reset the bot's memory, as a freshly started bot process would be."""
        for attr in (
            "seen",
            "replies",
            "statuses",
            "media",
            "duplicates",
            "reply_errors",
            "log",
            "sent",
        ):
            getattr(self.bot, attr).clear()
        self.bot.rejected_signatures = 0
        self.received.clear()

    def wamids(self, name: str, category: str = "message") -> list[str]:
        return [e.wamid for e in self.store.events(name, category=category) if e.wamid]

    def replies_to(self, wamid: str) -> list[dict[str, Any]]:
        return [r for r in self.bot.replies if r["context"]["message_id"] == wamid]


@asynccontextmanager
async def running_harness(db: Path) -> AsyncIterator[Harness]:
    """A store at `db` and the example bot listening on a free port."""
    store = CassetteStore.open(f"sqlite:///{db}")
    # The Graph URL is set per replay, once its sandbox is bound.
    app = make_app(BotConfig("http://127.0.0.1:1", TOKEN, SECRET, VERIFY))
    app.middlewares.append(validate_webhooks)
    app[RECEIVED] = []
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield Harness(store, f"http://127.0.0.1:{runner.addresses[0][1]}/webhook", app)
    finally:
        await runner.cleanup()
        store.close()
