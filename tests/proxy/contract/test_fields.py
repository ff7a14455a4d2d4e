"""Inbound message fields: each type's schema, values typed from strings, new messages."""

from __future__ import annotations

from typing import Any

import pytest
from openapi import validate

from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.contract.fields import PayloadError
from pseudowa.proxy.contract.fields import build_message
from pseudowa.proxy.contract.fields import field_value
from pseudowa.proxy.contract.fields import set_message_field

USER = "16505551234"
ACCOUNT = wh.BusinessAccount()


def _text(body: str, wamid: str, ts: str = "1750000000") -> dict[str, Any]:
    return wh.message("text", USER, wh.text_body(body), wamid=wamid, timestamp=ts)


def test_set_field_is_checked_against_the_message_type() -> None:
    text = _text("hi", "wamid.A")
    assert set_message_field(text, "text.body", "bye")["text"] == {"body": "bye"}
    assert text["text"]["body"] == "hi"  # a copy
    with pytest.raises(
        PayloadError,
        match=r"'text.bogus' is not a field of a text message.*"
        r"did you mean text.body",
    ):
        set_message_field(text, "text.bogus", "x")
    with pytest.raises(PayloadError, match="'image.caption' is not a field of a text message"):
        set_message_field(text, "image.caption", "x")
    with pytest.raises(PayloadError, match="text.body takes a string"):
        set_message_field(text, "text.body", 42)


def test_set_field_types_values_from_strings() -> None:
    loc = wh.message("location", USER, wh.location_body(1.0, 2.0, "Cafe"), wamid="wamid.L")
    assert set_message_field(loc, "location.latitude", "12.5")["location"]["latitude"] == 12.5
    assert set_message_field(loc, "location.longitude", -3)["location"]["longitude"] == -3
    for bad, why in (
        ("north", "takes a number"),
        ("true", "takes a number"),
        ("95", "between -90 and 90"),
    ):
        with pytest.raises(PayloadError, match=why):
            set_message_field(loc, "location.latitude", bad)
    fwd = set_message_field(loc, "context.forwarded", "true")
    assert fwd["context"] == {"forwarded": True}
    with pytest.raises(PayloadError, match="takes Unix seconds"):
        set_message_field(loc, "timestamp", "yesterday")
    assert set_message_field(loc, "timestamp", 1750000123)["timestamp"] == "1750000123"


def test_interactive_fields_follow_the_interactive_type() -> None:
    reply = wh.message("interactive", USER, wh.button_reply_body("yes", "Yes"), wamid="wamid.B")
    out = set_message_field(reply, "interactive.button_reply.title", "Sure")
    assert out["interactive"]["button_reply"] == {"id": "yes", "title": "Sure"}
    with pytest.raises(PayloadError, match="not a field of an interactive button_reply message"):
        set_message_field(reply, "interactive.list_reply.title", "x")


def test_built_messages_satisfy_metas_schema_and_name_what_they_lack() -> None:
    reply = build_message(
        "button_reply",
        USER,
        wamid="wamid.N",
        timestamp="1750000000",
        context={"from": ACCOUNT.display_phone_number, "id": "wamid.BTN"},
        reply_id="yes",
        title="Yes",
    )
    assert reply["type"] == "interactive" and reply["context"]["id"] == "wamid.BTN"
    validate("WebhookPayload", wh.inbound_webhook(ACCOUNT, reply, "Ana"))
    assert field_value(reply, "interactive.button_reply.title") == "Yes"
    assert field_value(reply, "interactive.nothing.here") is None
    with pytest.raises(PayloadError, match="a text message needs body"):
        build_message("text", USER, wamid="wamid.N", timestamp="1")
    with pytest.raises(PayloadError, match="cannot add a 'gif' message; kinds: text, image"):
        build_message("gif", USER, wamid="wamid.N", timestamp="1")
    assert issubclass(PayloadError, ValueError)
