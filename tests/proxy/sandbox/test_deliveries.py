"""The emitter's records as a reader sees them: an outcome's wamids, a progress line."""

from __future__ import annotations

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.sandbox.deliveries import Outcome
from pseudowa.proxy.sandbox.deliveries import Progress


def test_an_outcome_knows_the_wamids_its_body_carries() -> None:
    msg = webhooks.message("text", "16505551234", webhooks.text_body("hi"), wamid="wamid.A")
    body = webhooks.dumps(webhooks.inbound_webhook(BusinessAccount(), msg, "Ana"))
    assert Outcome(1, "#1", body).wamids == ["wamid.A"]
    assert Outcome(2, "#2", b"not json").wamids == []  # a mutated body carries none


def test_a_progress_line_says_what_waits_and_when_the_next_retry_comes() -> None:
    waiting = Progress(
        pending=3, retrying=2, next_retry_s=4000, next_attempt=5, delivered=7, dropped=1
    )
    assert waiting.line() == (
        "3 webhooks pending, 2 to retry (attempt 5 in 1.1 h); 7 delivered, 1 dropped"
    )
    done = Progress(
        pending=1, retrying=0, next_retry_s=None, next_attempt=None, delivered=8, dropped=0
    )
    assert done.line() == "1 webhook pending; 8 delivered, 0 dropped"
