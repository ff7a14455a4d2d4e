"""The example bot run in-process: it listens, and answers Meta's verify handshake."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import pytest

from pseudowa.proxy.examples.example_bot import BotConfig
from pseudowa.proxy.testing.bots import ExampleBot

CONFIG = BotConfig("http://127.0.0.1:9", "token", "secret", "verify-me")


def test_url_before_start_raises() -> None:
    bot = ExampleBot(CONFIG)
    with pytest.raises(RuntimeError, match="not started"):
        _ = bot.url


async def test_start_on_port_zero_picks_a_port() -> None:
    bot = ExampleBot(CONFIG)
    url = await bot.start()
    try:
        parts = urlsplit(url)
        assert parts.scheme == "http"
        assert parts.hostname == "127.0.0.1"
        assert parts.port and parts.port > 0
        assert parts.path == "/webhook"
        assert bot.url == url
    finally:
        await bot.stop()
    with pytest.raises(RuntimeError):
        _ = bot.url


async def test_verify_handshake_echoes_the_challenge() -> None:
    async with ExampleBot(CONFIG) as bot, aiohttp.ClientSession() as http:
        query = {
            "hub.mode": "subscribe",
            "hub.verify_token": "verify-me",
            "hub.challenge": "1158201444",
        }
        async with http.get(bot.url, params=query) as resp:
            assert resp.status == 200
            assert await resp.text() == "1158201444"
        assert "verified handshake" in bot.state.log


async def test_verify_handshake_with_a_wrong_token_is_refused() -> None:
    async with ExampleBot(CONFIG) as bot, aiohttp.ClientSession() as http:
        query = {
            "hub.mode": "subscribe",
            "hub.verify_token": "wrong",
            "hub.challenge": "1158201444",
        }
        async with http.get(bot.url, params=query) as resp:
            assert resp.status == 403
            assert "1158201444" not in await resp.text()
        assert "handshake rejected" in bot.state.log
        assert "verified handshake" not in bot.state.log


async def test_state_is_the_bots_own() -> None:
    bot = ExampleBot(CONFIG)
    assert bot.state.config is CONFIG
    assert bot.state.seen == set()


async def test_stop_frees_the_port() -> None:
    bot = ExampleBot(CONFIG)
    port = urlsplit(await bot.start()).port
    await bot.stop()
    again = ExampleBot(CONFIG, port=port or 0)
    try:
        assert urlsplit(await again.start()).port == port
    finally:
        await again.stop()
