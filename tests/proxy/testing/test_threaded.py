"""The threaded sandbox: blocking where no loop runs, awaitable where one does, and it
leaves no thread or port behind."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.testing.bots import ExampleBot
from pseudowa.proxy.testing.threaded import THREAD_NAME
from pseudowa.proxy.testing.threaded import LoopThread
from pseudowa.proxy.testing.threaded import ThreadedSandbox


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == THREAD_NAME]


def _listening(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sb() -> Iterator[ThreadedSandbox]:
    sandbox = ThreadedSandbox.start(SandboxConfig(speed=0, quiet_s=0.2))
    yield sandbox
    sandbox.close()


@pytest.fixture(autouse=True)
def bot(request: pytest.FixtureRequest) -> Iterator[ExampleBot | None]:
    """The example bot, connected, for every test that uses the `sb` sandbox."""
    if "sb" not in request.fixturenames:
        yield None
        return
    sandbox: ThreadedSandbox = request.getfixturevalue("sb")
    example = ExampleBot.for_sandbox(sandbox.sandbox)
    sandbox.runner.call(example.start())
    sandbox.connect_bot(example.url)
    yield example
    sandbox.runner.call(example.stop())


def test_close_leaves_no_thread_and_no_port() -> None:
    before = _threads()
    sandbox = ThreadedSandbox.start()
    url = sandbox.graph_url
    assert _listening(url) and len(_threads()) == len(before) + 1
    sandbox.close()
    sandbox.close()  # idempotent
    assert not _listening(url) and _threads() == before


def test_blocking_calls_where_no_loop_runs(sb: ThreadedSandbox) -> None:
    alice = sb.user("16505551234", name="Alice")
    wamid = alice.send_text("hi")
    assert isinstance(wamid, str) and wamid.startswith("wamid.")
    [reply] = alice.wait_for_replies(1, timeout=5)
    assert reply.text == "echo: hi" and sb.assert_replied(alice, contains="echo") == reply


async def test_the_same_calls_are_awaitable_inside_a_coroutine(sb: ThreadedSandbox) -> None:
    alice = sb.user("16505551234", name="Alice")
    pending = alice.send_text("hi")
    assert asyncio.isfuture(pending)  # not a blocked loop: an awaitable
    assert (await pending).startswith("wamid.")
    [reply] = await alice.wait_for_replies(1, timeout=5)
    assert reply.text == "echo: hi"


def test_failed_assertions_say_what_the_user_got(sb: ThreadedSandbox) -> None:
    alice = sb.user("16505551234", name="Alice")
    alice.send_text("hi")
    with pytest.raises(
        AssertionError, match=r"no reply containing 'bye' within 0.5 s; it got: \['echo: hi'\]"
    ):
        sb.assert_replied(alice, contains="bye", timeout=0.5)
    with pytest.raises(
        AssertionError, match=r"the bot replied to Alice \(16505551234\): \['echo: hi'\]"
    ):
        sb.assert_no_reply(alice, quiet_s=0.2)


class Forgetful(set[str]):
    def __contains__(self, item: object) -> bool:
        return False


def test_a_redelivered_message_must_be_answered_once(
    sb: ThreadedSandbox, bot: ExampleBot | None
) -> None:
    alice = sb.user("16505551234", name="Alice")
    wamid = alice.send_text("hi")
    sb.assert_replied(alice)
    sb.redeliver(wamid)
    sb.assert_deduplicated(wamid)
    # A bot that forgets what it saw answers the second delivery too: the check fails.
    assert bot is not None
    bot.state.seen = Forgetful()
    wamid = alice.send_text("again")
    sb.assert_replied(alice, contains="echo: again")
    sb.redeliver(wamid)
    with pytest.raises(AssertionError, match=rf"failed dedupe: {wamid} delivered 2 times"):
        sb.assert_deduplicated(wamid)


def test_loop_thread_runs_coroutines_and_stops() -> None:
    runner = LoopThread()

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert runner.call(answer()) == 42 and runner.run(answer()) == 42
    runner.stop()
    assert not runner.alive
