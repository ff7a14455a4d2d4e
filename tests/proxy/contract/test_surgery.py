"""Payload surgery: events removed with what they leave empty, failed statuses, media
pointed at new bytes, shifted timestamps; every result still Meta's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi import validate

from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.contract.fields import PayloadError
from pseudowa.proxy.contract.surgery import failed_status
from pseudowa.proxy.contract.surgery import is_download_of
from pseudowa.proxy.contract.surgery import remove_events
from pseudowa.proxy.contract.surgery import shift_payload_timestamps
from pseudowa.proxy.contract.surgery import swap_media_answer

USER = "16505551234"
MEDIA_ID = "1037543291543636"
ACCOUNT = wh.BusinessAccount()


def _text(body: str, wamid: str, ts: str = "1750000000") -> dict[str, Any]:
    return wh.message("text", USER, wh.text_body(body), wamid=wamid, timestamp=ts)


def test_removing_one_of_two_messages_rewrites_the_body() -> None:
    a = _text("a", "wamid.A")
    b = wh.message("text", "447700900123", wh.text_body("b"), wamid="wamid.B", timestamp="1")
    contacts = [wh.contact(USER, "Ana"), wh.contact("447700900123", "Bo")]
    both = wh.envelope(ACCOUNT, wh.messages_value(ACCOUNT, [a, b], contacts))
    left = remove_events(both, [1])
    assert left is not None
    value = next(iter(wh.changes(left)))
    assert [m["id"] for m in value["messages"]] == ["wamid.A"]
    assert value["contacts"] == [wh.contact(USER, "Ana")]  # Bo has no message left
    validate("WebhookPayload", left)
    assert remove_events(both, [0, 1]) is None
    assert len(both["entry"][0]["changes"][0]["value"]["messages"]) == 2  # untouched


def test_failed_status_carries_the_contract_error_without_pricing() -> None:
    sent = wh.status("wamid.R", "sent", USER, timestamp="1750000001", biz_opaque_callback_data="k")
    assert "conversation" in sent and "pricing" in sent
    failed = failed_status(sent, 131047)
    assert failed["status"] == "failed"
    assert "conversation" not in failed and "pricing" not in failed
    assert failed["errors"][0]["code"] == 131047
    assert failed["errors"][0]["title"] == "Re-engagement message"
    assert failed["biz_opaque_callback_data"] == "k" and failed["timestamp"] == "1750000001"
    validate("WebhookPayload", wh.status_webhook(ACCOUNT, [failed]))


def test_shift_timestamps_keeps_the_string_form() -> None:
    payload = wh.status_webhook(ACCOUNT, [wh.status("wamid.R", "sent", USER, timestamp="100")])
    assert shift_payload_timestamps(payload, 60) == 1
    st = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert st["timestamp"] == "160"
    assert st["conversation"]["expiration_timestamp"] == str(100 + 24 * 3600 + 60)
    with pytest.raises(PayloadError, match="negative"):
        shift_payload_timestamps(payload, -1000)


def test_swapped_media_answer_has_hex_sha_and_string_size() -> None:
    body = json.dumps(
        {
            "messaging_product": "whatsapp",
            "url": "u",
            "mime_type": "image/png",
            "sha256": "00",
            "file_size": "12",
            "id": MEDIA_ID,
        }
    ).encode()
    out = swap_media_answer(body, MEDIA_ID, "image/jpeg", "ab" * 32, 99)
    assert out is not None
    assert json.loads(out) == {
        "messaging_product": "whatsapp",
        "url": "u",
        "mime_type": "image/jpeg",
        "sha256": "ab" * 32,
        "file_size": "99",
        "id": MEDIA_ID,
    }
    assert swap_media_answer(body, "999", "image/jpeg", "ab", 1) is None


def test_a_download_names_its_media_by_mid_or_seed_path() -> None:
    signed = f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={MEDIA_ID}&ext=1"
    assert is_download_of(signed, MEDIA_ID)
    assert is_download_of(f"http://127.0.0.1:8080/media/download/{MEDIA_ID}/", MEDIA_ID)
    assert not is_download_of(signed, "999")
    assert not is_download_of(f"https://graph.facebook.com/v23.0/{MEDIA_ID}", MEDIA_ID)
