"""Simulated users' pure parts: numbers, media types, what a reply reads as."""

from __future__ import annotations

import pytest

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.outbound import parse_send
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.sandbox.users import Reply
from pseudowa.proxy.sandbox.users import digits
from pseudowa.proxy.sandbox.users import guess_mime


def test_phone_numbers_become_wa_ids() -> None:
    assert digits("+1 (650) 555-1234") == "16505551234"
    with pytest.raises(ConfigError, match="not a phone number"):
        digits("alice")


@pytest.mark.parametrize(
    ("data", "name", "kind", "mime"),
    [
        (seeds.tiny_png(1), None, "image", "image/png"),
        (b"\xff\xd8\xff\xe0rest", None, "image", "image/jpeg"),
        (b"%PDF-1.7", None, "document", "application/pdf"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "sticker", "image/webp"),
        (b"anything", "report.csv", "document", "text/csv"),
        (b"unknown bytes", None, "audio", "audio/ogg"),
    ],
)
def test_media_types_come_from_the_name_then_the_bytes(
    data: bytes, name: str | None, kind: str, mime: str
) -> None:
    assert guess_mime(data, name, kind) == mime


def _send(body: bytes) -> SendRequest:
    parsed = parse_send(body)
    assert isinstance(parsed, SendRequest)
    return parsed


def test_a_reply_reads_as_the_user_sees_it() -> None:
    text = _send(
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"text",'
        b'"text":{"body":"echo: hi"}}'
    )
    buttons = _send(
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"interactive",'
        b'"interactive":{"type":"button","body":{"text":"Pick one"},"action":'
        b'{"buttons":[{"type":"reply","reply":{"id":"a","title":"A"}}]}}}'
    )
    image = _send(
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"image",'
        b'"image":{"link":"https://example.com/a.png","caption":"look"}}'
    )
    assert [Reply(s, "wamid.x", False, 0.0).text for s in (text, buttons, image)] == [
        "echo: hi",
        "Pick one",
        "look",
    ]
    assert Reply(text, "wamid.x", False, 0.0).type == "text"
