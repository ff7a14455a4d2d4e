"""Replay end to end: the fake Graph API, the emitter and the example bot on real sockets.

A seed cassette (what Meta sends) replayed against the example bot with a journal
gives a full recording; replaying that recording must pass the check, and each
misbehaviour a user cares about must make it fail.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bot_harness import SECRET
from bot_harness import TOKEN
from bot_harness import VERIFY
from bot_harness import Harness
from bot_harness import running_harness

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.proxy.examples.example_bot import Bot
from pseudowa.proxy.testing.ports import free_port


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path / "replay.db") as h:
        yield h


async def test_image_round_trip_records_then_replays_clean(harness: Harness) -> None:
    seed = seeds.image_seed(harness.store)
    first = await harness.replay(seed)
    # The seed holds no sends, so the first run differs: that is how a recording is made.
    assert not first.ok and first.check.run_sends == 1
    assert harness.bot.media[0].sha256_ok
    assert first.journal is not None
    recording = first.journal
    harness.forget()

    report = await harness.replay(recording)
    assert report.ok, "\n".join(report.render())
    assert report.check.run_sends == report.check.recorded_sends == 1
    assert harness.bot.replies[0]["text"]["body"].endswith("sha256 ok)")
    # Recorded statuses came back for the recorded wamid, in Meta's order.
    assert [s["status"] for s in harness.bot.statuses] == ["sent", "delivered", "read"]
    assert "check: OK" in report.render()


async def test_journal_keeps_every_request_of_the_run(harness: Harness) -> None:
    seed = seeds.image_seed(harness.store)
    report = await harness.replay(seed)
    assert report.journal is not None
    exchanges = list(harness.store.interactions(report.journal))
    kinds = [x.kind for x in exchanges]
    # The handshake is journaled without the bot's verify token, the sends without the token.
    assert not any(
        VERIFY in x.url or TOKEN.encode() in repr(x.request_headers).encode() for x in exchanges
    )
    assert kinds.count("graph") >= 2  # media look-up and the reply (plus mark-as-read)
    assert kinds.count("media") == 1
    assert kinds.count("webhook") >= 4  # verify, the image, three statuses
    stored = harness.store.get_cassette(report.journal)
    assert stored.source == "replay"
    assert stored.media_count == 1  # media carried over, so the journal replays on its own


async def test_duplicates_are_deduped_by_the_example_bot(harness: Harness) -> None:
    recording = await harness.record(seeds.text_seed(harness.store))
    report = await harness.replay(recording, duplicate=1.0, seed=7)
    assert report.ok, "\n".join(report.render())
    assert report.to_json()["webhooks"]["duplicated"] > 0
    assert len(harness.bot.duplicates) >= 3
    assert len(harness.bot.replies) == 3


async def test_a_bot_that_does_not_dedupe_fails_the_check(harness: Harness, tmp_path: Path) -> None:
    recording = await harness.record(seeds.text_seed(harness.store))
    naive = harness.bot
    naive_seen = naive.seen

    class Forgetful(set[str]):
        def __contains__(self, item: object) -> bool:
            return False

    naive.seen = Forgetful()
    report = await harness.replay(recording, duplicate=1.0, seed=3)
    naive.seen = naive_seen
    assert not report.ok
    assert report.check.dedupe_failures
    assert any("failed dedupe" in line for line in report.render())


async def test_changed_reply_is_shown_as_a_field_diff(harness: Harness) -> None:
    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    original = Bot.reply_text

    async def shouty(self: Bot, msg: dict[str, Any], text: str) -> None:
        await original(self, msg, text.upper())

    Bot.reply_text = shouty  # type: ignore[method-assign]
    try:
        report = await harness.replay(recording)
    finally:
        Bot.reply_text = original  # type: ignore[method-assign]
    assert not report.ok
    text = "\n".join(report.render())
    assert "differs in: text.body" in text
    assert '-    "body": "echo: hi"' in text and '+    "body": "ECHO: HI"' in text
    assert "check: DIFFERENT" in text


async def test_a_pywa_style_bot_passes_against_a_recording_without_preview_url(
    harness: Harness,
) -> None:
    """pywa always sends `preview_url: false`; the recording's client never did."""
    recording = await harness.record(seeds.text_seed(harness.store))
    assert not any(b"preview_url" in x.request_body for x in harness.store.interactions(recording))
    original = Bot.reply_text

    async def pywa_style(self: Bot, msg: dict[str, Any], text: str) -> None:
        await self.reply(msg, "text", {"body": text, "preview_url": False})

    Bot.reply_text = pywa_style  # type: ignore[method-assign]
    try:
        report = await harness.replay(recording)
    finally:
        Bot.reply_text = original  # type: ignore[method-assign]
    texts = [r for r in harness.bot.replies if r["type"] == "text"]
    assert texts and all(r["text"]["preview_url"] is False for r in texts)
    assert report.ok, "\n".join(report.render())
    # Answered from the recording by shape: the recorded statuses came back.
    assert {s["status"] for s in harness.bot.statuses} == {"sent", "delivered", "read"}


async def test_failed_statuses_reach_the_bot_with_their_code(harness: Harness) -> None:
    seed = seeds.text_seed(harness.store, texts=("hi",))
    await harness.replay(seed, fail_status_rate=1.0, fail_status_code=131047)
    failed = [s for s in harness.bot.statuses if s["status"] == "failed"]
    assert failed and all(131047 in s["errors"] for s in failed)


async def test_fail_status_rate_applies_to_sends_matched_to_a_recording(harness: Harness) -> None:
    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    report = await harness.replay(recording, fail_status_rate=1.0, fail_status_code=131047)
    assert report.check.run_sends == report.check.recorded_sends > 0
    statuses = [s["status"] for s in harness.bot.statuses]
    assert statuses == ["sent", "failed"] * report.check.run_sends
    assert all(131047 in s["errors"] for s in harness.bot.statuses if s["status"] == "failed")
    notes = [line for line in report.render() if line.startswith("  note:")]
    assert notes and all("reported failed instead" in line for line in notes)


async def test_a_changed_send_still_gets_its_recorded_answer_and_statuses(
    harness: Harness,
) -> None:
    """Matched by meaning (same recipient, type and position), a send that differs in a
    detail is answered with the recorded wamid, so the recorded statuses follow it."""
    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    original = Bot.reply_text

    async def other(self: Bot, msg: dict[str, Any], text: str) -> None:
        await original(self, msg, text + "!")

    Bot.reply_text = other  # type: ignore[method-assign]
    try:
        report = await harness.replay(recording)
    finally:
        Bot.reply_text = original  # type: ignore[method-assign]
    assert not report.ok  # the check still shows the difference
    assert not [line for line in report.render() if line.startswith("  note:")]
    assert {s["status"] for s in harness.bot.statuses} == {"sent", "delivered", "read"}


async def test_recorded_statuses_of_a_send_not_made_say_why_they_were_not_emitted(
    harness: Harness,
) -> None:
    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    original = Bot.reply_text

    async def silent(self: Bot, msg: dict[str, Any], text: str) -> None:
        return None

    Bot.reply_text = silent  # type: ignore[method-assign]
    try:
        report = await harness.replay(recording)
    finally:
        Bot.reply_text = original  # type: ignore[method-assign]
    notes = [line for line in report.render() if line.startswith("  note:")]
    assert notes, report.render()
    assert not any("the bot never made the send" in line for line in notes)
    assert all("was not replayed" in line for line in notes)


async def test_statuses_option_limits_what_is_emitted(harness: Harness) -> None:
    seed = seeds.text_seed(harness.store, texts=("hi",))
    await harness.replay(seed, statuses=("sent",))
    assert {s["status"] for s in harness.bot.statuses} == {"sent"}


async def test_strict_mode_reports_unmatched_sends(harness: Harness) -> None:
    seed = seeds.text_seed(harness.store, texts=("hi",))
    report = await harness.replay(seed, strict=True)
    assert not report.ok
    assert report.unmatched and report.unmatched[0].startswith("no recording matched")
    assert any(code == 100 for code in harness.bot.reply_errors)
    # The refused send is visible, with Meta's error code.
    text = "\n".join(report.render())
    assert (
        "; 2 refused by the Graph API" in text and "refused: text to " in text and "(#100)" in text
    )
    assert report.to_json()["check"]["refused"][0]["code"] == 100
    assert any(line.startswith("  refused: ") for line in report.problems)


async def test_bad_signature_is_rejected_and_reported_dropped(harness: Harness) -> None:
    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    report = await harness.replay(recording, signing="bad", retry_time_scale=1e-6, skip_verify=True)
    assert harness.bot.rejected_signatures > 0
    assert harness.bot.replies == []
    assert not report.ok
    assert report.check.undelivered
    assert report.check.not_ok and all(d.status == 401 for d in report.check.not_ok)


async def test_wrong_verify_token_stops_the_run(harness: Harness) -> None:
    seed = seeds.text_seed(harness.store, texts=("hi",))
    with pytest.raises(VerifyFailed):
        await harness.replay(seed, verify_token="not-the-bots-token")
    assert harness.bot.replies == []


async def test_every_emitted_webhook_is_valid_and_signed(harness: Harness) -> None:
    from pseudowa.proxy.contract import signature

    await harness.replay(seeds.image_seed(harness.store))
    received = harness.received
    assert len(received) >= 4
    for body in received:
        assert wh.parse(body) is not None
    assert harness.bot.rejected_signatures == 0
    assert signature.verify(SECRET, received[0], signature.sign(SECRET, received[0]))


async def test_proxy_mode_serves_a_bot_that_keeps_metas_urls(
    harness: Harness, tmp_path: Path
) -> None:
    """The bot calls https://graph.facebook.com through the proxy, trusting mitmproxy's CA,
    and downloads from the https://lookaside.fbsbx.com URL the fake hands out."""
    import ssl

    import aiohttp

    from pseudowa.proxy.mitm.ca import ensure_ca

    recording = await harness.record(seeds.image_seed(harness.store))
    confdir = str(tmp_path / "mitmproxy")
    trust = ssl.create_default_context(cafile=str(ensure_ca(confdir)))  # verification on
    proxy_port = free_port()
    bot = harness.bot
    direct = bot.session, bot.config
    lines: list[str] = []
    async with aiohttp.ClientSession(
        proxy=f"http://127.0.0.1:{proxy_port}", connector=aiohttp.TCPConnector(ssl=trust)
    ) as session:
        bot.session = session
        bot.config = dataclasses.replace(bot.config, graph_base_url="https://graph.facebook.com")
        try:
            report = await harness.replay(
                recording,
                proxy_port=proxy_port,
                confdir=confdir,
                journal_name="through-proxy",
                on_line=lines.append,
            )
        finally:
            bot.session, bot.config = direct
    assert report.ok, "\n".join(report.render())
    assert bot.media and bot.media[0].sha256_ok
    assert bot.replies[0]["text"]["body"].endswith("sha256 ok)")
    assert report.redirected == 3  # media look-up, download, reply
    assert report.to_json()["proxy"] == {"url": f"http://127.0.0.1:{proxy_port}", "redirected": 3}
    assert f"proxy http://127.0.0.1:{proxy_port}: 3 requests redirected" in "\n".join(
        report.render()
    )
    ca = str(tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem")
    assert lines == [
        (
            f"proxy    http://127.0.0.1:{proxy_port}: graph.facebook.com, lookaside.fbsbx.com -> "
            f"fake Graph API {harness.graph_url}; other hosts pass through"
        ),
        f"         trust mitmproxy's CA certificate {ca}; run the bot with",
        (
            f"         HTTPS_PROXY=http://127.0.0.1:{proxy_port} SSL_CERT_FILE={ca} "
            f"REQUESTS_CA_BUNDLE={ca} NODE_EXTRA_CA_CERTS={ca}"
        ),
    ]
    # The look-up handed out a Meta-looking URL; the download went to the fake all the same.
    exchanges = list(harness.store.interactions("through-proxy"))
    [lookup] = [x for x in exchanges if x.kind == "graph" and x.method == "GET"]
    assert json.loads(lookup.response_body)["url"].startswith(
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?"
    )
    assert [x.response_status for x in exchanges if x.kind == "media"] == [200]
    with socket.socket() as s:  # the proxy is gone
        assert s.connect_ex(("127.0.0.1", proxy_port)) != 0


async def test_a_webhook_answered_200_only_on_retry_fails_unless_tolerated(
    harness: Harness,
) -> None:
    """The README counts webhooks not answered with 200 as a failure, retried or not."""
    from aiohttp import web

    from pseudowa.proxy.sandbox.config import SandboxConfig
    from pseudowa.proxy.sandbox.sandbox import Sandbox

    seed = seeds.text_seed(harness.store, texts=("hi",))
    posts: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(text=request.query.get("hub.challenge", ""))
        posts.append(1)
        return web.Response(status=500 if len(posts) % 2 else 200)  # each first try fails

    app = web.Application()
    app.router.add_route("*", "/webhook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    try:
        reports = []
        for tolerate in (False, True):
            config = SandboxConfig(
                bot_url=url,
                speed=0,
                quiet_s=0.3,
                retry_time_scale=1e-6,
                tolerate_retries=tolerate,
                journal=False,
            )
            async with Sandbox(config, store=harness.store) as sb:
                reports.append(await sb.replay(seed, check=False))
    finally:
        await runner.cleanup()
    strict, tolerant = reports
    assert strict.check.not_ok and not strict.check.undelivered
    assert not strict.ok
    assert any(line.startswith("! webhook ") for line in strict.problems)
    assert tolerant.ok, tolerant.render()
    assert any(line.startswith("  note: webhook ") for line in tolerant.render())


async def test_a_recorded_error_no_send_matched_is_reported(harness: Harness) -> None:
    from pseudowa.storage.records import Exchange

    recording = await harness.record(seeds.text_seed(harness.store, texts=("hi",)))
    request = {"messaging_product": "whatsapp", "to": "16505550000", "type": "text"}
    request["text"] = {"body": "to someone the bot never writes to"}
    error = {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}
    harness.store.append_many(
        recording,
        [
            (
                Exchange(
                    "graph",
                    "POST",
                    "https://graph.facebook.com/v23.0/106540352242922/messages",
                    request_body=json.dumps(request).encode(),
                    response_status=400,
                    response_body=json.dumps(error).encode(),
                ),
                [],
            )
        ],
    )
    report = await harness.replay(recording)
    [note] = report.unreplayed_errors
    assert "recorded error 130429" in note and "text to 16505550000" in note
    assert "was not replayed" in note
    assert f"  note: {note}" in report.render()
    assert report.to_json()["unreplayed_errors"] == [note]
