"""The bundled example bot, run in-process on a free port, pointed at a sandbox.

    async with Sandbox(SandboxConfig()) as sb, ExampleBot.for_sandbox(sb) as bot:
        await sb.connect_bot(bot.url)

The bot's state (`bot.state`: seen wamids, replies, statuses, media fetched) is the
example bot's own, so tests read what the bot saw rather than what was sent.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import Bot
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import make_app

if TYPE_CHECKING:
    from pseudowa.proxy.sandbox.sandbox import Sandbox


class ExampleBot:
    """The example bot on 127.0.0.1 (port 0 by default); an async context manager."""

    def __init__(self, config: BotConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.app = make_app(config)
        self._runner: web.AppRunner | None = None

    @classmethod
    def for_sandbox(cls, sandbox: Sandbox) -> ExampleBot:
        """A bot using the sandbox's Graph URL, secrets and phone number id."""
        c = sandbox.config
        return cls(
            BotConfig(
                sandbox.graph_url, c.access_token, c.app_secret, c.verify_token, c.phone_number_id
            )
        )

    @property
    def state(self) -> Bot:
        """What the bot saw and did."""
        return self.app[BOT_KEY]

    @property
    def url(self) -> str:
        """The bot's webhook URL."""
        if self._runner is None:
            raise RuntimeError("the bot is not started")
        return f"http://{self.host}:{self._runner.addresses[0][1]}/webhook"

    async def start(self) -> str:
        """Listen; returns the webhook URL."""
        runner = web.AppRunner(self.app)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ExampleBot:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
