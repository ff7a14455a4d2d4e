"""Which recorded answer a live send gets: the same shape first, then by meaning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pseudowa.proxy.contract.matching import DEFAULT_VOLATILE
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.proxy.sandbox.recordings import Recordings
from pseudowa.proxy.sandbox.recordings import read_recordings
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

USER = "16505551234"
URL = "https://graph.facebook.com/v23.0/106/messages"
RATE_LIMIT = {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}


def body(text: str, to: str = USER, **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "text",
        "text": {"body": text},
        **extra,
    }


def exchange(request: dict[str, Any], status: int, answer: dict[str, Any], at: float) -> Exchange:
    return Exchange(
        "graph",
        "POST",
        URL,
        request_body=json.dumps(request).encode(),
        response_status=status,
        response_body=json.dumps(answer).encode(),
        started_at=at,
        finished_at=at + 0.01,
    )


def recordings(tmp_path: Path, exchanges: list[Exchange]) -> Recordings:
    store = CassetteStore.open(f"sqlite:///{tmp_path}/r.db")
    try:
        store.create_cassette("c", phone_number_ids=["106"])
        store.append_many("c", [(x, []) for x in exchanges])
        return read_recordings(store, "c", DEFAULT_VOLATILE)
    finally:
        store.close()


def take(found: Recordings, request: dict[str, Any]) -> tuple[int, str] | None:
    send = parse_send(json.dumps(request).encode())
    assert isinstance(send, SendRequest)
    shape = RequestShape.of_parsed("POST", "/106/messages", send.body, DEFAULT_VOLATILE)
    taken = found.take(shape, send)
    return None if taken is None else (taken[0].status, taken[1])


def ok(wamid: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "messages": [{"id": wamid}]}


def test_a_recorded_rate_limit_reaches_a_send_that_differs_in_a_detail(tmp_path: Path) -> None:
    """Recorded: the first send hit 130429, the retry passed. The bot now words it
    differently: it still gets the error first, then the success."""
    found = recordings(
        tmp_path,
        [
            exchange(body("hello"), 400, RATE_LIMIT, 1),
            exchange(body("hello"), 200, ok("wamid.A"), 2),
        ],
    )
    assert take(found, body("hello!", biz_opaque_callback_data="run-2")) == (400, "position")
    assert take(found, body("hello!", biz_opaque_callback_data="run-2")) == (200, "position")
    assert found.unreplayed_errors() == []
    assert take(found, body("hello!")) is None  # each answer is used once


def test_the_same_shape_wins_over_position(tmp_path: Path) -> None:
    found = recordings(
        tmp_path,
        [exchange(body("a"), 200, ok("wamid.A"), 1), exchange(body("b"), 400, RATE_LIMIT, 2)],
    )
    assert take(found, body("b")) == (400, "shape")
    assert take(found, body("a!")) == (200, "nearest")  # position 1 is taken: nearest left


def test_another_recipient_or_type_does_not_take_an_answer(tmp_path: Path) -> None:
    found = recordings(tmp_path, [exchange(body("a"), 400, RATE_LIMIT, 1)])
    assert take(found, body("a", to="16505550000")) is None
    assert [a.error for a in found.unreplayed_errors()] == [(130429, "(#130429) Rate limit hit")]
    assert found.unreplayed_errors()[0].describe() == f"text to {USER} (#0)"


def test_strict_takes_only_the_same_shape(tmp_path: Path) -> None:
    found = recordings(tmp_path, [exchange(body("a"), 400, RATE_LIMIT, 1)])
    send = parse_send(json.dumps(body("a!")).encode())
    assert isinstance(send, SendRequest)
    shape = RequestShape.of_parsed("POST", "/106/messages", send.body, DEFAULT_VOLATILE)
    assert found.take(shape, send, by_meaning=False) is None
