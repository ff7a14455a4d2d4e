"""The same sandbox from async tests: every call is awaited instead of blocking.

Needs pytest-asyncio (or run the same calls without `await` in plain tests)."""

from __future__ import annotations

import pytest

from pseudowa.proxy.testing.bots import ExampleBot
from pseudowa.proxy.testing.threaded import ThreadedSandbox

pytest.importorskip("pytest_asyncio")


@pytest.fixture
def bot(pseudowa_sandbox: ThreadedSandbox, pseudowa_example_bot: ExampleBot) -> ExampleBot:
    return pseudowa_example_bot


@pytest.mark.asyncio
async def test_async_tests_await_the_same_calls(
    pseudowa_sandbox: ThreadedSandbox, bot: ExampleBot
) -> None:
    bob = pseudowa_sandbox.user("447700900123", name="Bob")
    await bob.send_text("hello")
    [reply] = await bob.wait_for_replies(1, timeout=5)
    assert reply.text == "echo: hello"
