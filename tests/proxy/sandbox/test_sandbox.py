"""The Python API end to end: a Sandbox on port 0, the example bot, users, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi import validate

from pseudowa.proxy import ConfigError
from pseudowa.proxy import Sandbox
from pseudowa.proxy import SandboxConfig
from pseudowa.proxy import VerifyFailed
from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.testing.bots import ExampleBot

SAMPLE = Path(__file__).resolve().parents[3] / "cassettes" / "image-round-trip"


async def test_the_issue_snippet_runs_against_the_example_bot(tmp_path: Path) -> None:
    config = SandboxConfig(db=f"sqlite:///{tmp_path / 'x.db'}", speed=0, quiet_s=0.3)
    async with Sandbox(config) as sb:
        assert sb.graph_url.startswith("http://127.0.0.1:")  # bound before the bot starts
        async with ExampleBot.for_sandbox(sb) as bot:
            await sb.connect_bot(bot.url)
            alice = sb.user("16505551234", name="Alice")
            wamid = await alice.send_text("hi")
            assert wamid.startswith("wamid.") and wamid in bot.state.seen
            [reply] = await alice.wait_for_replies(1, timeout=5)
            assert reply.text == "echo: hi"
            assert reply.send.reply_to == wamid  # the bot quoted Alice's message

            image = seeds.tiny_png(3)
            await alice.send_image(image, caption="look")
            [answer] = await alice.wait_for_replies(1, timeout=5)
            # The bot looked the media id up, downloaded the signed URL, checked the sha256.
            assert bot.state.media and bot.state.media[-1].sha256_ok
            assert bot.state.media[-1].size == len(image)
            assert "sha256 ok" in (answer.text or "")

            await sb.idle(0.3)
            seen = {(s["id"], s["status"]) for s in bot.state.statuses}
            for r in (reply, answer):  # Meta's statuses followed each of the bot's sends
                assert {(r.wamid, "sent"), (r.wamid, "delivered"), (r.wamid, "read")} <= seen

            report = await sb.replay(str(SAMPLE), check=True)
            assert report.ok, report.problems
            assert report.problems == []
            assert report.check.run_sends == report.check.recorded_sends == 1


async def test_every_webhook_of_a_live_session_is_meta_shaped(tmp_path: Path) -> None:
    async with Sandbox(SandboxConfig(speed=0)) as sb, ExampleBot.for_sandbox(sb) as bot:
        await sb.connect_bot(bot.url)
        alice, bob = sb.user("+1 650-555-1234", name="Alice"), sb.user("447700900123", "Bob")
        await alice.send_text("héllo 👋")
        await bob.send_location(51.5, -0.12, name="Office")
        await alice.react(alice.sent[0], "👍")
        await alice.wait_for_replies(1, timeout=5)
        await sb.idle(0.2)
        for x in sb.journal.exchanges:
            if x.kind == "webhook" and x.method == "POST":
                validate("WebhookPayload", json.loads(x.request_body))
        # Replies go to the user they address, not to everyone.
        assert [r.text for r in alice.replies] == ["echo: héllo 👋"]
        assert all(r.send.wa_id == "447700900123" for r in bob.replies)
        assert alice.wa_id == "16505551234" and sb.user("16505551234") is alice


async def test_mistakes_are_user_errors_with_one_line() -> None:
    sb = Sandbox(SandboxConfig())
    with pytest.raises(RuntimeError, match="not started"):
        sb.graph_url
    async with sb:
        with pytest.raises(ConfigError, match="connect_bot"):
            await sb.user("16505551234").send_text("hi")
        with pytest.raises(ConfigError, match="no store"):
            await sb.replay("some-cassette")


async def test_a_wrong_verify_token_fails_the_handshake() -> None:
    async with Sandbox(SandboxConfig(verify_token="not-the-bots")) as sb:
        c = sb.config
        config = BotConfig(sb.graph_url, c.access_token, c.app_secret, "pseudowa-verify-token")
        async with ExampleBot(config) as bot:
            with pytest.raises(VerifyFailed, match="verify handshake failed") as info:
                await sb.connect_bot(bot.url)
            assert "\n" not in str(info.value)


async def test_wait_for_replies_names_what_arrived() -> None:
    async with Sandbox(SandboxConfig(speed=0)) as sb, ExampleBot.for_sandbox(sb) as bot:
        await sb.connect_bot(bot.url)
        alice = sb.user("16505551234", name="Alice")
        await alice.send_text("hi")
        await alice.wait_for_replies(1, timeout=5)
        with pytest.raises(TimeoutError, match=r"Alice \(16505551234\) got 0 of 1 replies"):
            await alice.wait_for_replies(1, timeout=0.2)
