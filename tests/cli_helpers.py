"""What CLI tests share: a small seeded cassette, and the check of a user mistake (one
line, `Error: ...`, non-zero exit)."""

from __future__ import annotations

import json

from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore


def one_line_error(result: object) -> str:
    """The single `Error: ...` line of a failed command; fails the test otherwise."""
    out = getattr(result, "output")
    assert getattr(result, "exit_code") != 0
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("Error: ")
    return lines[0]


def seed_greeting(db: str, name: str = "greeting") -> None:
    """A small cassette NAME: one webhook with an indexed text message, one linked image."""
    with CassetteStore.open(db) as store:
        store.create_cassette(name, source="sandbox", graph_api_version="v23.0")
        body = json.dumps({"object": "whatsapp_business_account"}).encode()
        store.append(
            name,
            Exchange(
                "webhook",
                "POST",
                "http://bot/webhook",
                request_body=body,
                response_status=200,
                started_at=100.0,
                finished_at=100.25,
            ),
            [EventData(wamid="wamid.A", category="message", type="text", sender="16505551234")],
        )
        blob = store.put_media(b"\x89PNG fake", "image/png")
        store.link_media(name, "1234", blob.sha256)
