"""A bot's test suite on pseudowa's pytest plugin: copy it next to your bot and adapt.

Run it with `pytest` once pseudowa is installed (the plugin registers itself). Here the
bundled example bot plays your bot; for yours, write a fixture that starts it with
`WA_GRAPH_URL=pseudowa_sandbox.graph_url` and the sandbox's secrets
(`pseudowa_sandbox.config.access_token`, `.app_secret`, `.verify_token`), then calls
`pseudowa_sandbox.connect_bot("http://127.0.0.1:<port>/webhook")`.
"""

from __future__ import annotations

import pytest

from pseudowa.proxy.testing.bots import ExampleBot
from pseudowa.proxy.testing.threaded import ThreadedSandbox


@pytest.fixture
def bot(pseudowa_sandbox: ThreadedSandbox, pseudowa_example_bot: ExampleBot) -> ExampleBot:
    """Your bot, started and connected (the verify handshake is done)."""
    return pseudowa_example_bot


def test_text_is_echoed(pseudowa_sandbox: ThreadedSandbox, bot: ExampleBot) -> None:
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    alice.send_text("hi")
    pseudowa_sandbox.assert_replied(alice, contains="echo: hi")


def test_a_photo_is_fetched_and_checked(pseudowa_sandbox: ThreadedSandbox, bot: ExampleBot) -> None:
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
    )
    alice.send_image(png, caption="look")
    pseudowa_sandbox.assert_replied(alice, contains="sha256 ok")


def test_the_same_message_twice_is_answered_once(
    pseudowa_sandbox: ThreadedSandbox, bot: ExampleBot
) -> None:
    alice = pseudowa_sandbox.user("16505551234", name="Alice")
    wamid = alice.send_text("once please")
    pseudowa_sandbox.assert_replied(alice, contains="once please")
    pseudowa_sandbox.redeliver(wamid)  # Meta delivers a webhook again when unsure
    pseudowa_sandbox.assert_deduplicated(wamid)
