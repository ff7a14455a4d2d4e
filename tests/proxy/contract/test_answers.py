"""The Graph answer builders: bodies, headers, errors and the journal scrubbers, all pure.

Answers a bot sees are checked against Meta's OpenAPI schemas (tests/openapi.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi import validate

from pseudowa.proxy.contract import answers
from pseudowa.proxy.contract.hosts import DEFAULT_API_VERSION
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.matching import RequestShape
from pseudowa.proxy.contract.outbound import SendRequest

TO = "16505551234"


def expected_send_answer(send: SendRequest, wamid: str) -> dict[str, Any]:
    """Meta's `MessageResponsePayload` for a send, built the plain way."""
    message: dict[str, Any] = {"id": wamid}
    if send.type == "template":
        message["message_status"] = "accepted"
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": send.to, "wa_id": send.wa_id}],
        "messages": [message],
    }


# -- sends -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "kind"),
    [
        (TO, "text"),
        (TO, "template"),
        ('+1 "650" \\ 555-1234', "text"),
        ("\u0661\u0662\u0663", "text"),
    ],
)
def test_send_answer_body_is_the_answer_as_compact_json(to: str, kind: str) -> None:
    send_ = SendRequest(to=to, wa_id="".join(ch for ch in to if ch.isdigit()), type=kind, body={})
    wamid = new_wamid(send_.wa_id)
    expected = expected_send_answer(send_, wamid)
    validate("MessageResponsePayload", expected)
    assert (
        answers.send_answer_body(send_, wamid)
        == json.dumps(expected, separators=(",", ":")).encode()
    )


@pytest.mark.parametrize(
    ("body", "wamid"),
    [
        (b'{"messages":[{"id":"wamid.A"},{"id":"wamid.B"}]}', "wamid.A"),
        (b'{"messages":[]}', None),
        (b'{"messages":[{"id":7}]}', None),
        (b'{"messages":["wamid.A"]}', None),
        (b'{"error":{"code":131047}}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_wamid_of(body: bytes, wamid: str | None) -> None:
    assert answers.wamid_of(body) == wamid


def test_usage_header_is_compact_json_keyed_by_waba() -> None:
    header = answers.usage_header("102290129340398")
    assert " " not in header
    [usage] = json.loads(header)["102290129340398"]
    assert usage["type"] == "whatsapp" and usage["estimated_time_to_regain_access"] == 0


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/v21.0/1/messages", "v21.0"),
        ("/v3/1/media", "v3"),
        ("/1/messages", DEFAULT_API_VERSION),
        ("/messages", DEFAULT_API_VERSION),
    ],
)
def test_api_version_names_the_paths_version_or_the_default(path: str, version: str) -> None:
    assert answers.api_version(path) == version


def test_describe_nearest_numbers_candidates_with_their_differences() -> None:
    hello = RequestShape.of("POST", "/1/messages", b'{"text":{"body":"hello"}}')
    used = RequestShape.of("POST", "/1/messages", b'{"text":{"body":"bye"}}')
    text = answers.describe_nearest([(hello, ["body.text.body"]), (used, [])])
    assert text.startswith("nearest recorded requests: [1] POST /1/messages")
    assert "differs in: body.text.body" in text
    assert "[2] " in text and "nothing (its recorded answers were all used)" in text
    assert answers.describe_nearest([]) == "the cassette has no recorded sends"


def test_unmatched_error_is_a_code_100_naming_the_request() -> None:
    shape = RequestShape.of("POST", "/1/messages", b'{"text":{"body":"hullo"}}')
    err = answers.unmatched_error(shape, [])
    envelope = err.envelope("AbCdEfGhIjKlMnOpQrStUvW")
    validate("GraphAPIError", envelope)
    assert (err.code, err.http_status) == (100, 400)
    assert envelope["error"]["message"] == "no recording matched POST /1/messages"
    assert envelope["error"]["error_data"]["details"] == "the cassette has no recorded sends"


# -- media -------------------------------------------------------------------------------


def test_media_answer_has_metas_fields_in_metas_order() -> None:
    answer = answers.media_answer("1037543291543636", "https://x/y", "image/jpeg", "ab" * 32, 99)
    assert list(answer) == ["messaging_product", "url", "mime_type", "sha256", "file_size", "id"]
    assert answer["file_size"] == "99" and answer["sha256"] == "ab" * 32
    assert (answer["id"], answer["url"], answer["mime_type"]) == (
        "1037543291543636",
        "https://x/y",
        "image/jpeg",
    )


def test_not_downloadable_is_lookasides_404() -> None:
    err = answers.not_downloadable("gone")
    envelope = err.envelope()
    validate("GraphAPIError", envelope)
    assert (err.code, err.http_status) == (100, 404)
    assert envelope["error"]["type"] == "GraphMethodException"


# -- requests no handler takes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "http_status", "message"),
    [
        (404, 400, "Unknown path components: /v21.0/a/b/c"),
        (405, 400, "Unsupported put request."),
        (413, 413, "(#100) Request Entity Too Large"),
    ],
)
def test_http_error_speaks_metas_envelope(status: int, http_status: int, message: str) -> None:
    err = answers.http_error(status, "Request Entity Too Large", "PUT", "/v21.0/a/b/c")
    envelope = err.envelope()
    validate("GraphAPIError", envelope)
    assert (err.code, err.http_status, envelope["error"]["message"]) == (100, http_status, message)


@pytest.mark.parametrize(
    ("headers", "query", "token"),
    [
        ({"Authorization": "Bearer abc"}, {}, "abc"),
        ({"Authorization": "bearer  abc "}, {}, "abc"),
        ({"Authorization": "Bearer "}, {"access_token": "q"}, "q"),
        ({"Authorization": "Basic abc"}, {}, None),
        ({"Authorization": "abc"}, {}, None),
        ({}, {"access_token": "q"}, "q"),
        ({}, {"access_token": ""}, None),
        ({}, {}, None),
    ],
)
def test_bearer_token(headers: dict[str, str], query: dict[str, str], token: str | None) -> None:
    assert answers.bearer_token(headers.get("Authorization"), query.get("access_token")) == token


# -- what a journal keeps ------------------------------------------------------------------


def test_redact_url() -> None:
    assert answers.redact_url("/whatsapp_business/attachments/?mid=1&ext=2&hash=abc") == (
        "/whatsapp_business/attachments/?mid=1&ext=2&hash=REDACTED"
    )
    assert answers.redact_url("/v21.0/1/messages?access_token=sekrit&x=1") == (
        "/v21.0/1/messages?access_token=REDACTED&x=1"
    )
    assert answers.redact_url("/v21.0/1/messages?x=1") == "/v21.0/1/messages?x=1"


def test_redact_body_removes_download_signatures_only() -> None:
    body = json.dumps(
        {"url": "https://h/whatsapp_business/attachments/?mid=1&ext=2&hash=f00d", "id": "1"}
    ).encode()
    redacted = answers.redact_body(body)
    assert b"f00d" not in redacted and b"hash=REDACTED" in redacted
    assert json.loads(redacted)["id"] == "1"
    plain = b'{"messages":[{"id":"wamid.A"}]}'
    assert answers.redact_body(plain) is plain  # nothing to scrub: the same object back


def test_journal_headers_drop_only_the_bearer_token() -> None:
    headers = {"Authorization": "Bearer sekrit", "Content-Type": "application/json", "X-A": "1"}
    assert answers.journal_headers(headers) == [("Content-Type", "application/json"), ("X-A", "1")]
