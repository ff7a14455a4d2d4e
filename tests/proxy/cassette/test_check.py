"""The replay check over plain exchanges: sends as a multiset, dedupe, webhook answers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pseudowa.proxy.cassette import check
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.contract.matching import DEFAULT_VOLATILE
from pseudowa.storage.records import Exchange

USER = "16505551234"


def send(
    body: dict[str, Any], at: float, url: str = "https://graph.facebook.com/v23.0/1/messages"
) -> Exchange:
    full = {"messaging_product": "whatsapp", "to": USER, **body}
    return Exchange(
        "graph",
        "POST",
        url,
        request_body=json.dumps(full).encode(),
        response_status=200,
        started_at=at,
        finished_at=at + 0.01,
    )


def text(body: str, at: float, reply_to: str | None = None, **kw: Any) -> Exchange:
    payload: dict[str, Any] = {"type": "text", "text": {"body": body}}
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    return send(payload, at, **kw)


def webhook(wamid: str, start: float, end: float, status: int = 200) -> Exchange:
    msg = wh.message("text", USER, wh.text_body("hi"), wamid=wamid)
    body = wh.dumps(wh.inbound_webhook(wh.BusinessAccount(), msg))
    return Exchange(
        "webhook",
        "POST",
        "http://bot/webhook",
        request_body=body,
        response_status=status,
        started_at=start,
        finished_at=end,
    )


def test_same_sends_in_another_order_pass_and_say_so() -> None:
    recorded = [text("a", 1), text("b", 2)]
    run = [text("b", 1), text("a", 2)]
    result = check.compare(recorded, run)
    assert result.ok and result.reordered


def test_version_and_seed_route_do_not_matter() -> None:
    recorded = [text("a", 1, url="https://graph.facebook.com/v18.0/1/messages")]
    run = [text("a", 1, url="http://127.0.0.1:8080/messages")]
    assert check.compare(recorded, run).ok


def test_missing_and_extra_sends_fail_with_a_readable_diff() -> None:
    result = check.compare([text("hello", 1)], [text("goodbye", 1), text("extra", 2)])
    assert not result.ok
    lines = "\n".join(result.diff_lines())
    assert "differs in: text.body" in lines
    assert '-    "body": "hello"' in lines and '+    "body": "goodbye"' in lines
    assert "+ send not in the recording: text" in lines


def test_read_receipts_and_invalid_requests_are_not_sends() -> None:
    read = send({"status": "read", "message_id": "wamid.X"}, 1)
    read = Exchange(
        "graph",
        "POST",
        read.url,
        request_body=json.dumps(
            {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}
        ).encode(),
    )
    broken = Exchange("graph", "POST", read.url, request_body=b"{not json")
    assert check.sends([read, broken]) == []


def test_dedupe_failure_by_context_reference() -> None:
    recorded = [webhook("wamid.A", 0, 1), text("echo", 0.5, reply_to="wamid.A")]
    run = [
        webhook("wamid.A", 0, 1),
        text("echo", 0.5, reply_to="wamid.A"),
        webhook("wamid.A", 2, 3),
        text("echo", 2.5, reply_to="wamid.A"),
    ]
    result = check.compare(recorded, run)
    assert result.dedupe_failures == {"wamid.A": (2, 2)}
    assert not result.ok


def test_dedupe_failure_by_timing_when_the_bot_does_not_quote() -> None:
    run = [webhook("wamid.B", 0, 1), text("x", 0.5), webhook("wamid.B", 2, 3), text("x", 2.5)]
    result = check.compare([webhook("wamid.B", 0, 1), text("x", 0.5)], run)
    assert "wamid.B" in result.dedupe_failures


def test_deduping_bot_passes_with_duplicates() -> None:
    recorded = [webhook("wamid.C", 0, 1), text("x", 0.5, reply_to="wamid.C")]
    run = [*recorded, webhook("wamid.C", 2, 3)]
    assert check.compare(recorded, run).ok


def test_non_200_answers_are_listed() -> None:
    result = check.compare([], [webhook("wamid.D", 0, 1, status=500), webhook("wamid.D", 2, 3)])
    assert [d.status for d in result.not_ok] == [500]
    assert result.to_json()["non_200"][0]["status"] == 500


def test_recorded_send_wamids_are_those_the_send_answers_returned() -> None:
    def answered(wamid: str, at: float, status: int = 200, url: str | None = None) -> Exchange:
        x = send({"type": "text", "text": {"body": "hi"}}, at, *([url] if url else []))
        answer = {"messaging_product": "whatsapp", "messages": [{"id": wamid}]}
        return dataclasses.replace(
            x, response_status=status, response_body=json.dumps(answer).encode()
        )

    exchanges = [
        answered("wamid.A", 1.0),
        answered("wamid.B", 2.0, url="http://127.0.0.1:8080/messages"),  # the seed route
        answered("wamid.REFUSED", 3.0, status=400),
        answered("wamid.MEDIA", 4.0, url="https://graph.facebook.com/v23.0/1/media"),
        webhook("wamid.IN", 5.0, 5.1),
    ]
    assert check.recorded_send_wamids(exchanges) == {"wamid.A": 1.0, "wamid.B": 2.0}
    assert check.is_send_path("https://graph.facebook.com/v23.0/1/messages/?x=1")


def test_pywa_style_body_matches_a_recording_without_its_defaults() -> None:
    """pywa sends `recipient_type` and `preview_url: false`; the recording's client did not."""
    recorded = [text("hi", 1)]
    pywa = send(
        {
            "recipient_type": "individual",
            "type": "text",
            "text": {"body": "hi", "preview_url": False},
        },
        1,
    )
    assert check.compare(recorded, [pywa]).ok


def test_ignore_covers_a_field_present_on_one_side_only() -> None:
    recorded = [text("hi", 1)]
    run = [send({"type": "text", "text": {"body": "hi", "preview_url": True}}, 1)]
    assert not check.compare(recorded, run).ok
    volatile = DEFAULT_VOLATILE
    for pattern in ("text.preview_url", "*.preview_url", "text.*"):
        assert check.compare(recorded, run, (*volatile, pattern)).ok, pattern


def test_a_webhook_answered_200_only_on_retry_fails_unless_tolerated() -> None:
    run = [webhook("wamid.R", 0, 1, status=500), webhook("wamid.R", 2, 3)]
    assert not check.compare([], run).ok
    tolerated = check.compare([], run, tolerate_retries=True)
    assert tolerated.ok and tolerated.to_json()["tolerate_retries"] is True


def test_refused_sends_are_listed_with_their_error() -> None:
    refused = dataclasses.replace(
        text("hi", 1),
        response_status=400,
        response_body=json.dumps(
            {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}
        ).encode(),
    )
    broken = Exchange(
        "graph",
        "POST",
        refused.url,
        request_body=b"{not json",
        response_status=400,
        response_body=b'{"error": {"message": "Invalid parameter", "code": 100}}',
    )
    result = check.compare([], [text("ok", 0), refused, broken])
    assert [r.describe() for r in result.refused] == [
        f"text to {USER} refused: HTTP 400 (#130429) Rate limit hit",
        "invalid send refused: HTTP 400 (#100) Invalid parameter",
    ]
    assert result.to_json()["refused"][1] == {
        "send": "invalid send",
        "status": 400,
        "code": 100,
        "message": "Invalid parameter",
    }


def test_diff_keeps_its_markers_across_line_separators() -> None:
    result = check.compare([text("a", 1)], [text("one\u2028two\u2029three\x85four", 1)])
    lines = result.diff_lines()
    body = [line.strip() for line in lines if '"body"' in line]
    assert body == ['-    "body": "a"', '+    "body": "one\\u2028two\\u2029three\\u0085four"']
    # Every line of the diff is a diff line (indented) or the send's heading.
    assert all(line.startswith(("~ ", "    ")) for line in lines)


def test_accepting_the_run_replaces_the_recorded_sends_and_keeps_the_rest() -> None:
    recorded = [webhook("wamid.A", 10, 11), text("old", 10.5), webhook("wamid.B", 20, 21)]
    # The run at --speed 0: another clock, the same webhook bodies.
    run = [
        webhook("wamid.A", 1000, 1000.2),
        text("new", 1000.1),
        webhook("wamid.B", 1000.3, 1000.4),
        text("another", 1000.35),
    ]
    updated = check.accept_run_sends(recorded, run)
    assert [(x.kind, x.started_at) for x in updated] == [
        ("webhook", 10),
        ("graph", 10 + (1000.1 - 1000)),
        ("webhook", 20),
        ("graph", 20 + (1000.35 - 1000.3)),
    ]
    assert check.compare(updated, run).ok
    assert not check.compare(recorded, run).ok
