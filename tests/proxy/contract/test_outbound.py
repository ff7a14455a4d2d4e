"""POST /{phone_number_id}/messages: what the fake accepts, and how it refuses like Meta."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import error_for_unknown_media
from pseudowa.proxy.contract.outbound import parse_send

TO = "16505551234"


def send(type_: str | None, sub: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
    }
    if type_ is not None:
        body["type"] = type_
        if sub is not None:
            body[type_] = sub
    body.update(extra)
    return body


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def buttons(n: int, title: str = "Yes") -> dict[str, Any]:
    return {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": f"b{i}", "title": title}} for i in range(n)
            ]
        },
    }


def list_msg(rows: int, sections: int = 1) -> dict[str, Any]:
    return {
        "type": "list",
        "header": {"type": "text", "text": "H"},
        "body": {"text": "B"},
        "footer": {"text": "F"},
        "action": {
            "button": "Options",
            "sections": [
                {
                    "title": f"S{s}",
                    "rows": [
                        {"id": f"r{s}.{r}", "title": f"Row {r}", "description": "d"}
                        for r in range(rows)
                    ],
                }
                for s in range(sections)
            ],
        },
    }


TEMPLATE = {
    "name": "hello_world",
    "language": {"code": "en_US"},
    "components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/a.jpg"}}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {
                    "type": "currency",
                    "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990},
                },
            ],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "YES"}],
        },
    ],
}

VALID = {
    "text": send("text", {"body": "hello", "preview_url": False}),
    "text-unicode": send("text", {"body": "caf\u00e9 \U0001f600"}),
    "text-default-type": {"messaging_product": "whatsapp", "to": TO, "text": {"body": "hi"}},
    "image-id": send("image", {"id": "1037543291543636", "caption": "optional"}),
    "image-link": send("image", {"link": "https://example.com/a.jpg"}),
    "audio": send("audio", {"id": "1037543291543636"}),
    "video": send("video", {"link": "https://example.com/v.mp4", "caption": "c"}),
    "document": send("document", {"id": "1037543291543636", "filename": "invoice.pdf"}),
    "sticker": send("sticker", {"id": "1037543291543636"}),
    "location": send("location", {"latitude": 37.48, "longitude": "-122.14", "name": "HQ"}),
    "contacts": send(
        "contacts",
        [
            {
                "name": {"formatted_name": "Ana B", "first_name": "Ana"},
                "phones": [{"phone": "+1 650 555 0000", "type": "WORK"}],
            }
        ],
    ),
    "template": send("template", TEMPLATE),
    "template-no-components": send(
        "template", {"name": "hello_world", "language": {"code": "en_US"}}
    ),
    "buttons": send("interactive", buttons(3, "x" * 20)),
    "list": send("interactive", list_msg(5, 2)),
    "list-10": send("interactive", list_msg(10)),
    "cta_url": send(
        "interactive",
        {
            "type": "cta_url",
            "body": {"text": "See"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Open", "url": "https://x.org"},
            },
        },
    ),
    "reaction": send("reaction", {"message_id": "wamid.HBgL", "emoji": "\U0001f600"}),
    "reaction-removed": send("reaction", {"message_id": "wamid.HBgL", "emoji": ""}),
    "plus-number": {**send("text", {"body": "x"}), "to": "+1 (650) 555-1234"},
    "group": {**send("text", {"body": "x"}), "recipient_type": "group"},
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_accepts_every_contract_type(name: str) -> None:
    body = VALID[name]
    req = parse_send(raw(body))
    assert isinstance(req, SendRequest)
    assert req.type == body.get("type", "text")
    assert req.body == body
    assert req.to == body["to"]
    assert req.wa_id == "".join(c for c in body["to"] if c.isdigit())


def test_media_id_and_link_reported() -> None:
    by_id = parse_send(raw(VALID["image-id"]))
    assert (by_id.media_id, by_id.media_link) == ("1037543291543636", None)
    by_link = parse_send(raw(VALID["image-link"]))
    assert (by_link.media_id, by_link.media_link) == (None, "https://example.com/a.jpg")
    assert parse_send(raw(VALID["text"])).media_id is None


def test_reply_context_and_opaque_data() -> None:
    req = parse_send(
        raw(
            send(
                "text",
                {"body": "x"},
                context={"message_id": "wamid.q"},
                biz_opaque_callback_data="ord-7",
            )
        )
    )
    assert req.reply_to == "wamid.q"
    assert req.biz_opaque_callback_data == "ord-7"
    plain = parse_send(raw(VALID["text"]))
    assert plain.reply_to is None and plain.biz_opaque_callback_data is None


def test_category() -> None:
    assert parse_send(raw(VALID["template"])).category == "utility"
    assert parse_send(raw(VALID["text"])).category == "service"


def test_mark_as_read_with_typing_indicator() -> None:
    body = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.HBgL",
        "typing_indicator": {"type": "text"},
    }
    assert parse_send(raw(body)) == MarkRead("wamid.HBgL", True)
    del body["typing_indicator"]
    assert parse_send(raw(body)) == MarkRead("wamid.HBgL", False)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.x"}, 131009),
        ({"messaging_product": "whatsapp", "status": "read"}, 131008),
        (
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.x",
                "typing_indicator": {"type": "audio"},
            },
            131009,
        ),
    ],
)
def test_mark_as_read_rejections(body: dict[str, Any], code: int) -> None:
    with pytest.raises(GraphError) as info:
        parse_send(raw(body))
    assert info.value.code == code


REJECTED: dict[str, tuple[bytes, int]] = {
    "malformed-json": (b'{"messaging_product": "whatsapp", "to": ', 100),
    "not-utf8": (b"\xff\xfe{}", 100),
    "not-object": (b'["whatsapp"]', 100),
    "deeply-nested": (b"[" * 100_000, 100),
    "missing-messaging_product": (raw({"to": TO, "type": "text", "text": {"body": "x"}}), 131008),
    "wrong-messaging_product": (raw({**VALID["text"], "messaging_product": "sms"}), 131009),
    "missing-to": (
        raw({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
        131008,
    ),
    "empty-to": (raw({**VALID["text"], "to": ""}), 131008),
    "non-numeric-to": (raw({**VALID["text"], "to": "bob"}), 131009),
    "integer-to": (raw({**VALID["text"], "to": 16505551234}), 131009),
    "bad-recipient_type": (raw({**VALID["text"], "recipient_type": "broadcast"}), 131009),
    "unknown-type": (raw(send("carrier_pigeon", {"body": "x"})), 131009),
    "missing-sub-object": (raw(send("text")), 131008),
    "missing-image": (raw(send("image")), 131008),
    "text-empty-body": (raw(send("text", {"body": ""})), 131008),
    "text-too-long": (raw(send("text", {"body": "x" * 4097})), 131009),
    "media-without-id-or-link": (raw(send("image", {"caption": "c"})), 131008),
    "media-with-id-and-link": (raw(send("image", {"id": "1", "link": "https://x/a.jpg"})), 131009),
    "media-link-not-http": (raw(send("document", {"link": "file:///etc/passwd"})), 131009),
    "caption-on-audio": (raw(send("audio", {"id": "1", "caption": "c"})), 131009),
    "caption-on-sticker": (raw(send("sticker", {"id": "1", "caption": "c"})), 131009),
    "caption-too-long": (raw(send("image", {"id": "1", "caption": "c" * 1025})), 131009),
    "location-without-latitude": (raw(send("location", {"longitude": 1.0})), 131008),
    "location-non-numeric": (raw(send("location", {"latitude": "north", "longitude": 1})), 131009),
    "contacts-not-array": (raw(send("contacts", {"name": {"formatted_name": "A"}})), 131009),
    "contacts-without-name": (raw(send("contacts", [{"phones": []}])), 131008),
    "template-without-name": (raw(send("template", {"language": {"code": "en_US"}})), 131008),
    "template-without-language": (raw(send("template", {"name": "hello_world"})), 131008),
    "interactive-unknown-type": (
        raw(send("interactive", {**buttons(1), "type": "carousel3d"})),
        131009,
    ),
    "4-buttons": (raw(send("interactive", buttons(4))), 131009),
    "button-title-21": (raw(send("interactive", buttons(1, "x" * 21))), 131009),
    "no-buttons": (raw(send("interactive", buttons(0))), 131008),
    "list-11-rows": (raw(send("interactive", list_msg(11))), 131009),
    "list-11-rows-across-sections": (raw(send("interactive", list_msg(4, 3))), 131009),
    "list-row-title-25": (
        raw(
            send(
                "interactive",
                {
                    **list_msg(1),
                    "action": {
                        "button": "Options",
                        "sections": [{"rows": [{"id": "r", "title": "t" * 25}]}],
                    },
                },
            )
        ),
        131009,
    ),
    "cta-without-url": (
        raw(
            send(
                "interactive",
                {
                    "type": "cta_url",
                    "body": {"text": "x"},
                    "action": {"parameters": {"display_text": "Open"}},
                },
            )
        ),
        131008,
    ),
    "reaction-without-message_id": (raw(send("reaction", {"emoji": "x"})), 131008),
    "reaction-emoji-not-string": (
        raw(send("reaction", {"message_id": "wamid.x", "emoji": 1})),
        131009,
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejects_with_metas_code(name: str) -> None:
    body, code = REJECTED[name]
    with pytest.raises(GraphError) as info:
        parse_send(body)
    err = info.value
    assert err.code == code, err.details
    assert err.http_status == 400
    envelope = err.envelope()["error"]
    assert envelope["code"] == code
    assert envelope["message"].startswith(f"(#{code}) ")


def test_missing_parameter_names_it() -> None:
    with pytest.raises(GraphError) as info:
        parse_send(raw(send("location", {"longitude": 1.0})))
    assert "location.latitude" in info.value.details
    with pytest.raises(GraphError) as info:
        parse_send(raw({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}))
    assert "to" in info.value.details


def test_unknown_media_error() -> None:
    err = error_for_unknown_media("123")
    assert err.code == 131053
    assert "123" in err.details


def test_nesting_past_the_bound_is_invalid_parameter() -> None:
    """Deep enough to break any recursive walk of the body downstream, refused up front."""
    deep: Any = "leaf"
    for _ in range(500):  # the depth once found to crash request-shape matching
        deep = [deep]
    with pytest.raises(GraphError) as err:
        parse_send(json.dumps(send("text", {"body": "hi", "extra": deep})).encode())
    assert err.value.code == 100
    assert err.value.http_status == 400
    assert "nests deeper" in err.value.details


def test_a_deep_but_plausible_body_is_accepted() -> None:
    nested: Any = {"value": "x"}
    for _ in range(20):
        nested = {"inner": [nested]}
    parsed = parse_send(json.dumps(send("text", {"body": "hi"}, extra=nested)).encode())
    assert isinstance(parsed, SendRequest)
