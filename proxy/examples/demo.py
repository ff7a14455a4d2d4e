"""`pseudowa demo`: replay the image sample with its webhook delivered twice to the example
bot, and check the bot behaved as recorded, printing a readable transcript.

The sample is `cassettes/image-round-trip` (recorded with `pseudowa record` against the
sandbox); where it is not at hand (an installed wheel), the demo records the same round
trip first. Everything runs in one process on 127.0.0.1 with a throwaway store, offline.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pseudowa.proxy.cassette import mutations
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.examples.example_bot import BOT_KEY
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.examples.example_bot import make_app
from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.deliveries import Attempt
from pseudowa.proxy.sandbox.deliveries import Outcome
from pseudowa.proxy.sandbox.replay import ReplayReport
from pseudowa.proxy.sandbox.sandbox import Sandbox
from pseudowa.storage.export import import_cassette
from pseudowa.storage.export import is_export_dir
from pseudowa.storage.store import CassetteStore

Echo = Callable[[str], None]
SAMPLE = Path("cassettes") / "image-round-trip"
QUIET_S = 0.3  # the example bot answers at once; no need to wait a whole second


class _EchoLog(list[str]):
    """The bot's log, printed as it is written so the transcript interleaves."""

    def __init__(self, echo: Echo) -> None:
        super().__init__()
        self._echo = echo

    def append(self, line: str) -> None:
        super().append(line)
        self._echo(f"  bot      | {line}")


async def run_demo(echo: Echo, db_url: str | None = None, sample: Path | None = SAMPLE) -> bool:
    """Run the demo, printing through `echo`; True when the replay check passes."""
    with tempfile.TemporaryDirectory(prefix="pseudowa-demo-") as tmp:
        store = CassetteStore.open(db_url or f"sqlite:///{Path(tmp) / 'demo.db'}")
        try:
            return await _demo(store, echo, sample)
        finally:
            store.close()


async def _demo(store: CassetteStore, echo: Echo, sample: Path | None) -> bool:
    def show(attempt: Attempt, outcome: Outcome) -> None:
        if not showing:
            return
        result = f"HTTP {attempt.status}" if attempt.status is not None else attempt.error
        echo(f"  sandbox  | signed webhook {outcome.label} -> {result}")

    showing = False
    config = SandboxConfig(quiet_s=QUIET_S)
    async with Sandbox(config, store=store, on_attempt=show) as sb:
        # The fake Graph API is listening before the bot starts: the bot is given its URL.
        app = make_app(
            BotConfig(sb.graph_url, config.access_token, config.app_secret, config.verify_token)
        )
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            await sb.connect_bot(f"http://127.0.0.1:{runner.addresses[0][1]}/webhook")
            bot = app[BOT_KEY]
            if sample is not None and is_export_dir(str(sample)):
                info = import_cassette(
                    store, sample, name="demo-image", index_events=index_exchange
                )
                echo(
                    f"1. The image sample {sample}: {info.interaction_count} exchanges "
                    "recorded with pseudowa record (an image from the user, the bot fetches "
                    "it and replies)"
                )
            else:
                echo(
                    "1. Meta sends the bot an image (a seed cassette: one signed webhook + "
                    "PNG), recorded against the example bot"
                )
                seed = seeds.image_seed(store, "demo-seed")
                recorded = await sb.replay(seed, journal_name="demo-image")
                info = store.get_cassette("demo-image")
                echo(
                    f"   recorded cassette demo-image: {info.interaction_count} exchanges, "
                    f"{recorded.check.run_sends} reply, {recorded.statuses_emitted} statuses"
                )

            echo("2. The same conversation with the image webhook delivered twice, as Meta may")
            image = store.events("demo-image", category="message")[0]
            dup = mutations.duplicate(
                store, "demo-image", image.wamid or 0, gap_s=0.5, out="demo-image-dup"
            )
            echo(f"   {dup.line()}")
            for attr in ("seen", "replies", "statuses", "media", "duplicates"):
                getattr(bot, attr).clear()
            bot.log = _EchoLog(echo)
            showing = True
            report = await sb.replay("demo-image-dup", journal_name="demo-image-dup.run")
            return _conclude(report, bot, echo)
        finally:
            await runner.cleanup()


def _conclude(report: ReplayReport, bot: Any, echo: Echo) -> bool:
    echo("3. Replay check")
    for line in report.render():
        echo(f"   {line}")
    fetched = bot.media[0] if bot.media else None
    if fetched is not None:
        echo(
            f"   media {fetched.media_id}: {fetched.size} B {fetched.mime_type}, "
            f"sha256 {'checked OK' if fetched.sha256_ok else 'MISMATCH'}"
        )
    echo(
        f"   duplicates ignored by the bot: {len(bot.duplicates)}; replies sent: {len(bot.replies)}"
    )
    ok = report.ok and fetched is not None and fetched.sha256_ok and len(bot.duplicates) == 1
    echo("demo: OK" if ok else "demo: FAILED")
    return ok


def main(echo: Echo = print, db_url: str | None = None, sample: Path | None = SAMPLE) -> bool:
    """Synchronous entry point for the CLI."""
    return asyncio.run(run_demo(echo, db_url, sample))
