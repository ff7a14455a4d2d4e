"""`pseudowa demo`: replay the image sample with its webhook delivered twice to the example
bot, and check the bot behaved as recorded, printing a readable transcript.

The sample is `cassettes/image-round-trip` (recorded with `pseudowa record` against the
sandbox); where it is not at hand (an installed wheel), the demo records the same round
trip first. Everything runs in one process on 127.0.0.1 with a throwaway store, offline.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from pseudowa.storage.export import import_cassette
from pseudowa.storage.store import CassetteStore

from pseudowa.proxy.cassette import mutations as mutate
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.sandbox.emitter import Attempt
from pseudowa.proxy.sandbox.emitter import EmitterConfig
from pseudowa.proxy.sandbox.emitter import Outcome
from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import make_app
from pseudowa.proxy.cassette.mutations import index_exchange
from pseudowa.proxy.cli.cassette import is_export_dir
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.sandbox.replay import Replay
from pseudowa.proxy.sandbox.replay import ReplayOptions
from pseudowa.proxy.sandbox.replay import ReplayReport

Echo = Callable[[str], None]
TOKEN = "pseudowa-access-token"
SECRET = "pseudowa-app-secret"
VERIFY = "pseudowa-verify-token"
SAMPLE = Path("cassettes") / "image-round-trip"


class _EchoLog(list[str]):
    """The bot's log, printed as it is written so the transcript interleaves."""

    def __init__(self, echo: Echo) -> None:
        super().__init__()
        self._echo = echo

    def append(self, line: str) -> None:
        super().append(line)
        self._echo(f"  bot      | {line}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_demo(echo: Echo, db_url: str | None = None, sample: Path | None = SAMPLE) -> bool:
    """Run the demo, printing through `echo`; True when the replay check passes."""
    with tempfile.TemporaryDirectory(prefix="pseudowa-demo-") as tmp:
        store = CassetteStore.open(db_url or f"sqlite:///{Path(tmp) / 'demo.db'}")
        try:
            return await _demo(store, echo, sample)
        finally:
            store.close()


async def _demo(store: CassetteStore, echo: Echo, sample: Path | None) -> bool:
    graph_port = _free_port()
    app = make_app(BotConfig(f"http://127.0.0.1:{graph_port}", TOKEN, SECRET, VERIFY))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    bot = app[BOT_KEY]
    try:
        options = ReplayOptions(
            emitter=EmitterConfig(bot_url=bot_url, speed=0),
            graph=GraphConfig(access_token=TOKEN),
            graph_port=graph_port,
            quiet_s=0.3,
            journal_name="demo-image",
        )
        if sample is not None and is_export_dir(str(sample)):
            info = import_cassette(store, sample, name="demo-image", index_events=index_exchange)
            echo(f"1. The image sample {sample}: {info.interaction_count} exchanges recorded with "
                 "pseudowa record (an image from the user, the bot fetches it and replies)")
        else:
            echo("1. Meta sends the bot an image (a seed cassette: one signed webhook + PNG),"
                 " recorded against the example bot")
            seed = seeds.image_seed(store, "demo-seed")
            recorded = await Replay(store, seed, options).run()
            info = store.get_cassette("demo-image")
            echo(f"   recorded cassette demo-image: {info.interaction_count} exchanges, "
                 f"{recorded.check.run_sends} reply, {recorded.statuses_emitted} statuses")

        echo("2. The same conversation with the image webhook delivered twice, as Meta may")
        image = store.events("demo-image", category="message")[0]
        dup = mutate.duplicate(store, "demo-image", image.wamid or 0, gap_s=0.5,
                               out="demo-image-dup")
        echo(f"   {dup.line()}")
        for attr in ("seen", "replies", "statuses", "media", "duplicates"):
            getattr(bot, attr).clear()
        bot.log = _EchoLog(echo)

        def show(attempt: Attempt, outcome: Outcome) -> None:
            result = f"HTTP {attempt.status}" if attempt.status is not None else attempt.error
            echo(f"  sandbox  | signed webhook {outcome.label} -> {result}")

        replay_options = replace(
            options, journal_name="demo-image-dup.run", emitter=replace(options.emitter, speed=1.0)
        )
        report = await Replay(store, "demo-image-dup", replay_options, on_attempt=show).run()
        return _conclude(report, bot, echo)
    finally:
        await runner.cleanup()


def _conclude(report: ReplayReport, bot: Any, echo: Echo) -> bool:
    echo("3. Replay check")
    for line in report.render():
        echo(f"   {line}")
    fetched = bot.media[0] if bot.media else None
    if fetched is not None:
        echo(f"   media {fetched.media_id}: {fetched.size} B {fetched.mime_type}, "
             f"sha256 {'checked OK' if fetched.sha256_ok else 'MISMATCH'}")
    echo(f"   duplicates ignored by the bot: {len(bot.duplicates)}; replies sent: {len(bot.replies)}")
    ok = report.ok and fetched is not None and fetched.sha256_ok and len(bot.duplicates) == 1
    echo("demo: OK" if ok else "demo: FAILED")
    return ok


def main(echo: Echo = print, db_url: str | None = None, sample: Path | None = SAMPLE) -> bool:
    """Synchronous entry point for the CLI."""
    return asyncio.run(run_demo(echo, db_url, sample))
