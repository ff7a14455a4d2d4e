"""Webhook bodies: the shapes a bot parses, and the index the sandbox builds of them."""

from __future__ import annotations

import json

import pytest

from pseudowa.proxy.contract import webhooks as w
from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.contract.ids import is_wamid

ACCOUNT = w.BusinessAccount()
USER = "16505551234"
TS = "1749416383"


def only_value(payload: dict) -> dict:
    [entry] = payload["entry"]
    [change] = entry["changes"]
    assert change["field"] == "messages"
    return change["value"]


def inbound(type_: str, body, **kw) -> dict:
    return w.inbound_webhook(ACCOUNT, w.message(type_, USER, body, timestamp=TS, **kw), "Sheena")


# -- envelope and inbound messages --------------------------------------------------------


def test_text_message_envelope() -> None:
    payload = inbound("text", w.text_body("Does it come in another color?"))
    assert payload["object"] == "whatsapp_business_account"
    assert payload["entry"][0]["id"] == ACCOUNT.waba_id  # the WABA, not the phone number id
    value = only_value(payload)
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {
        "display_phone_number": "15550783881",
        "phone_number_id": "106540352242922",
    }
    assert value["contacts"] == [{"profile": {"name": "Sheena"}, "wa_id": USER}]
    [msg] = value["messages"]
    assert msg["from"] == USER
    assert is_wamid(msg["id"])
    assert msg["timestamp"] == TS
    assert msg["type"] == "text"
    assert msg["text"] == {"body": "Does it come in another color?"}


def test_timestamps_are_strings_of_unix_seconds() -> None:
    msg = w.message("text", USER, w.text_body("hi"))
    assert isinstance(msg["timestamp"], str) and msg["timestamp"].isdigit()
    st = w.status("wamid.x", "sent", USER)
    assert isinstance(st["timestamp"], str) and st["timestamp"].isdigit()
    assert isinstance(st["conversation"]["expiration_timestamp"], str)
    assert w.now_ts().isdigit()


def test_image_message() -> None:
    sha = w.sha256_b64(b"\xff\xd8jpeg")
    body = w.media_body(
        "image",
        "1037543291543636",
        "image/jpeg",
        sha,
        caption="look",
        url="https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
    )
    msg = only_value(inbound("image", body))["messages"][0]
    assert msg["image"] == {
        "caption": "look",
        "mime_type": "image/jpeg",
        "sha256": sha,
        "id": "1037543291543636",
        "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
    }
    assert "voice" not in msg["image"] and "animated" not in msg["image"]


def test_sha256_is_base64_of_digest() -> None:
    import base64
    import hashlib

    assert base64.b64decode(w.sha256_b64(b"abc")) == hashlib.sha256(b"abc").digest()


def test_audio_voice_note() -> None:
    body = w.media_body(
        "audio", "1908647269898587", "audio/ogg; codecs=opus", "x=", voice=True, caption="ignored"
    )
    assert body == {
        "mime_type": "audio/ogg; codecs=opus",
        "sha256": "x=",
        "id": "1908647269898587",
        "voice": True,
    }
    assert w.media_body("audio", "1", "audio/mpeg", "x=")["voice"] is False


def test_document_has_filename() -> None:
    body = w.media_body(
        "document", "1", "application/pdf", "x=", filename="invoice.pdf", caption="your invoice"
    )
    assert body["filename"] == "invoice.pdf"
    assert body["caption"] == "your invoice"
    assert "filename" not in w.media_body("image", "1", "image/png", "x=", filename="a.png")


def test_sticker_animated_flag() -> None:
    assert w.media_body("sticker", "1", "image/webp", "x=", animated=True)["animated"] is True
    assert w.media_body("sticker", "1", "image/webp", "x=")["animated"] is False
    assert "caption" not in w.media_body("sticker", "1", "image/webp", "x=", caption="c")


def test_media_body_rejects_non_media_kind() -> None:
    with pytest.raises(ValueError):
        w.media_body("text", "1", "text/plain", "x=")


def test_location_message() -> None:
    msg = only_value(inbound("location", w.location_body(37.48, -122.14, "HQ", "1 Hacker Way")))
    assert msg["messages"][0]["location"] == {
        "latitude": 37.48,
        "longitude": -122.14,
        "name": "HQ",
        "address": "1 Hacker Way",
    }
    assert w.location_body(1.0, 2.0) == {"latitude": 1.0, "longitude": 2.0}


def test_button_reply_with_context() -> None:
    ctx = {"from": ACCOUNT.display_phone_number, "id": "wamid.buttons"}
    msg = only_value(
        inbound("interactive", w.button_reply_body("cancel-button", "Cancel"), context=ctx)
    )["messages"][0]
    assert msg["context"] == ctx
    assert msg["type"] == "interactive"
    assert msg["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "cancel-button", "title": "Cancel"},
    }


def test_list_reply() -> None:
    assert w.list_reply_body("r1", "Row 1", "d") == {
        "type": "list_reply",
        "list_reply": {"id": "r1", "title": "Row 1", "description": "d"},
    }
    assert w.list_reply_body("r1", "Row 1") == {
        "type": "list_reply",
        "list_reply": {"id": "r1", "title": "Row 1"},
    }


def test_reaction() -> None:
    msg = only_value(inbound("reaction", w.reaction_body("wamid.orig", "\U0001f600")))["messages"][
        0
    ]
    assert msg["reaction"] == {"message_id": "wamid.orig", "emoji": "\U0001f600"}
    assert w.reaction_body("wamid.orig", "") == {"message_id": "wamid.orig", "emoji": ""}


def test_system_message_has_no_contacts() -> None:
    body = {"body": "User changed number", "wa_id": "16505559999", "type": "user_changed_number"}
    value = only_value(inbound("system", body))
    assert "contacts" not in value
    assert value["messages"][0]["system"] == body


def test_explicit_wamid_kept() -> None:
    assert w.message("text", USER, w.text_body("x"), wamid="wamid.fixed")["id"] == "wamid.fixed"


def test_wire_body_round_trips_non_ascii() -> None:
    payload = inbound("text", w.text_body("caf\u00e9 \U0001f600"))
    body = w.dumps(payload)
    assert body.isascii()
    assert w.parse(body) == payload


# -- statuses -----------------------------------------------------------------------------


def test_sent_status_has_conversation_with_expiration_and_pricing() -> None:
    st = w.status(
        "wamid.a",
        "sent",
        USER,
        timestamp="1750030073",
        category="marketing",
        conversation_id="c" * 32,
    )
    assert st["id"] == "wamid.a"
    assert st["status"] == "sent"
    assert st["recipient_id"] == USER
    assert st["conversation"] == {
        "id": "c" * 32,
        "expiration_timestamp": str(1750030073 + 86400),
        "origin": {"type": "marketing"},
    }
    assert st["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "type": "regular",
        "category": "marketing",
    }
    assert "errors" not in st


@pytest.mark.parametrize("value", ["delivered", "read"])
def test_delivered_and_read_have_conversation_without_expiration(value: str) -> None:
    st = w.status("wamid.a", value, USER, category="service")
    assert "expiration_timestamp" not in st["conversation"]
    assert st["conversation"]["origin"] == {"type": "service"}
    assert "pricing" not in st
    priced = w.status("wamid.a", value, USER, category="service", with_pricing=True)
    assert priced["pricing"] == {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "service",
    }


@pytest.mark.parametrize("version", ["v24.0", "v25.0", "v26.0", "v100.0", "24.0"])
def test_conversation_omitted_from_v24(version: str) -> None:
    for value in ("sent", "delivered", "read"):
        st = w.status("wamid.a", value, USER, api_version=version)
        assert "conversation" not in st
    assert "pricing" in w.status("wamid.a", "sent", USER, api_version=version)


@pytest.mark.parametrize("version", [None, "v18.0", "v23.0", "v23.9"])
def test_conversation_kept_before_v24(version: str | None) -> None:
    assert "conversation" in w.status("wamid.a", "sent", USER, api_version=version)


def test_failed_status_has_errors_and_no_conversation() -> None:
    st = w.status("wamid.a", "failed", USER, error=GraphError(131047), api_version="v23.0")
    assert "conversation" not in st and "pricing" not in st
    [err] = st["errors"]
    assert err["code"] == 131047
    assert err["title"] == err["message"] == "Re-engagement message"
    assert err["error_data"]["details"]
    assert err["href"].endswith("/error-codes")
    assert w.status("wamid.a", "failed", USER)["errors"][0]["code"] == 131026


def test_biz_opaque_callback_data_echoed_only_when_set() -> None:
    assert (
        w.status("wamid.a", "read", USER, biz_opaque_callback_data="ord-7")[
            "biz_opaque_callback_data"
        ]
        == "ord-7"
    )
    assert "biz_opaque_callback_data" not in w.status("wamid.a", "read", USER)


def test_unknown_status_rejected() -> None:
    with pytest.raises(ValueError):
        w.status("wamid.a", "seen", USER)


def test_status_webhook_envelope() -> None:
    payload = w.status_webhook(
        ACCOUNT, [w.status("wamid.a", "sent", USER), w.status("wamid.a", "delivered", USER)]
    )
    value = only_value(payload)
    assert "contacts" not in value and "messages" not in value
    assert [s["status"] for s in value["statuses"]] == ["sent", "delivered"]
    assert w.status_ids(payload) == ["wamid.a", "wamid.a"]


# -- batching -----------------------------------------------------------------------------


def test_merge_batches_same_waba_into_one_entry() -> None:
    other = w.BusinessAccount(waba_id="999", phone_number_id="888", display_phone_number="1555")
    p1 = inbound("text", w.text_body("one"))
    p2 = w.status_webhook(ACCOUNT, [w.status("wamid.a", "sent", USER)])
    p3 = w.inbound_webhook(other, w.message("text", USER, w.text_body("other")))
    p4 = inbound("text", w.text_body("two"))
    before = json.dumps([p1, p2, p3, p4])
    merged = w.merge([p1, p2, p3, p4])
    assert json.dumps([p1, p2, p3, p4]) == before  # inputs left alone
    assert merged["object"] == "whatsapp_business_account"
    assert [e["id"] for e in merged["entry"]] == [ACCOUNT.waba_id, "999"]
    first = merged["entry"][0]["changes"]
    assert [c["value"] for c in first] == [only_value(p1), only_value(p2), only_value(p4)]
    assert len(merged["entry"][1]["changes"]) == 1
    kinds = [(e.category, e.type) for e in w.events(merged)]
    assert kinds == [
        ("message", "text"),
        ("status", "sent"),
        ("message", "text"),
        ("message", "text"),
    ]


def test_merge_of_nothing_is_empty_batch() -> None:
    assert w.merge([]) == {"object": "whatsapp_business_account", "entry": []}


# -- indexing -----------------------------------------------------------------------------


def test_events_index_messages_statuses_and_errors() -> None:
    img = w.message(
        "image",
        USER,
        w.media_body("image", "1111222233334444", "image/jpeg", "aGk="),
        wamid="wamid.img",
        timestamp=TS,
    )
    txt = w.message("text", USER, w.text_body("hi"), wamid="wamid.txt", timestamp=TS)
    value = w.messages_value(ACCOUNT, [img, txt], [w.contact(USER, "S")])
    statuses = w.statuses_value(ACCOUNT, [w.status("wamid.out", "read", USER, timestamp=TS)])
    errors = {
        "messaging_product": "whatsapp",
        "metadata": ACCOUNT.metadata(),
        "errors": [GraphError(130429).status_error()],
    }
    payload = w.merge(
        [w.envelope(ACCOUNT, value), w.envelope(ACCOUNT, statuses), w.envelope(ACCOUNT, errors)]
    )
    evs = w.events(payload)
    assert [e.position for e in evs] == [0, 1, 2, 3]
    assert evs[0] == w.WebhookEvent(
        category="message",
        type="image",
        wamid="wamid.img",
        sender=USER,
        media_id="1111222233334444",
        media_sha256="aGk=",
        timestamp=TS,
        position=0,
        phone_number_id=ACCOUNT.phone_number_id,
    )
    assert (evs[1].type, evs[1].wamid, evs[1].media_id) == ("text", "wamid.txt", None)
    assert (evs[2].category, evs[2].type, evs[2].wamid, evs[2].recipient) == (
        "status",
        "read",
        "wamid.out",
        USER,
    )
    assert (evs[3].category, evs[3].type, evs[3].wamid) == ("error", "130429", None)
    assert w.status_ids(payload) == ["wamid.out"]


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b"42",
        b'"entry"',
        b'{"entry": {}}',
        b'{"object": "whatsapp_business_account"}',
        b"[" * 100_000,
    ],
)
def test_parse_returns_none_on_junk(junk: bytes) -> None:
    assert w.parse(junk) is None


def test_events_tolerate_malformed_but_parsable_bodies() -> None:
    body = json.dumps(
        {
            "entry": [
                "x",
                None,
                {"changes": "nope"},
                {
                    "changes": [
                        None,
                        3,
                        {"value": "v"},
                        {
                            "value": {
                                "metadata": "m",
                                "messages": [
                                    "junk",
                                    {"type": ["x"]},
                                    {"type": "image", "image": 1},
                                ],
                                "statuses": [
                                    1,
                                    {
                                        "status": "sent",
                                        "id": "wamid.s",
                                        "timestamp": 1750000000,
                                        "recipient_id": {"x": 1},
                                    },
                                ],
                                "errors": ["e", {"code": 5}],
                            }
                        },
                    ]
                },
            ]
        }
    ).encode()
    payload = w.parse(body)
    assert payload is not None
    evs = w.events(payload)
    assert [(e.category, e.type) for e in evs] == [
        ("message", None),
        ("message", "image"),
        ("status", "sent"),
        ("error", "5"),
    ]
    assert evs[1].media_id is None
    assert (evs[2].timestamp, evs[2].recipient) == ("1750000000", None)  # number kept as text
