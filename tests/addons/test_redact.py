"""Scrubbing and pseudonyms: pure functions, no mitmproxy, realistic WhatsApp data."""

from __future__ import annotations

import base64
import json

import pytest

from pseudowa.addons import redact
from pseudowa.addons.redact import Pseudonymizer
from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks as w
from pseudowa.proxy.contract.answers import REDACTED
from pseudowa.proxy.contract.ids import new_wamid

TOKEN = "EAAGm0PX4ZCpsBAKZCZBtestAccessToken1234567890"
APP_SECRET = "5f2b0a6f3c8e4d1a9b7c6e5d4f3a2b1c"
VERIFY = "s3cret-verify/token"
ACCOUNT = w.BusinessAccount()
USER = "16505551234"
OTHER = "447700900123"
MEDIA_ID = "1037543291543636"
MEDIA_URL = (
    "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1037543291543636"
    "&source=getMedia&ext=1749416983&hash=ARnJzQx2wYQ1u6Nf_ZPqj6c3N&_nc_cat=103"
    "&oh=01_Q5AaIGXb7v&oe=6851A2B3&_nc_sid=5e03e0"
)


# -- headers -----------------------------------------------------------------------------


def test_scrub_headers_drops_credentials_and_signatures_keeps_order():
    headers = [
        ("Host", "graph.facebook.com"),
        ("authorization", f"Bearer {TOKEN}"),
        ("Content-Type", "application/json"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("Cookie", "sid=1"),
        ("set-cookie", "sid=2"),
        ("X-Hub-Signature-256", "sha256=" + "a" * 64),
        ("x-hub-signature", "sha1=" + "b" * 40),
        ("User-Agent", "facebookexternalua"),
    ]
    assert redact.scrub_headers(headers) == [
        ("Host", "graph.facebook.com"),
        ("Content-Type", "application/json"),
        ("User-Agent", "facebookexternalua"),
    ]


def test_scrub_headers_replaces_secrets_in_other_values():
    out = redact.scrub_headers([("X-Debug", f"token={TOKEN}")], [TOKEN])
    assert out == [("X-Debug", f"token={REDACTED}")]


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            f"https://graph.facebook.com/v23.0/{MEDIA_ID}?access_token={TOKEN}",
            f"https://graph.facebook.com/v23.0/{MEDIA_ID}",
        ),
        (
            f"https://graph.facebook.com/v23.0/{MEDIA_ID}?phone_number_id=106540352242922"
            f"&access_token={TOKEN}&appsecret_proof=abc123",
            f"https://graph.facebook.com/v23.0/{MEDIA_ID}?phone_number_id=106540352242922",
        ),
        (
            f"https://graph.facebook.com/v23.0/me?appsecret_proof=abc&fields=id%2Cname&access_token={TOKEN}#frag",
            "https://graph.facebook.com/v23.0/me?fields=id%2Cname#frag",
        ),
    ],
)
def test_scrub_url_drops_credentials_anywhere(url, expected):
    assert redact.scrub_url(url) == expected


def test_scrub_url_media_download_keeps_mid_drops_signature():
    assert redact.scrub_url(MEDIA_URL) == (
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/"
        "?mid=1037543291543636&source=getMedia"
    )


def test_scrub_url_keeps_hash_on_urls_that_are_not_media_downloads():
    url = "https://example.com/page?hash=abc&ext=1"
    assert redact.scrub_url(url) == url


def test_scrub_url_redacts_the_verify_token_value():
    url = "http://127.0.0.1:8000/webhook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=abc"
    assert redact.scrub_url(url) == (
        "http://127.0.0.1:8000/webhook?hub.mode=subscribe&hub.challenge=1158201444"
        f"&hub.verify_token={REDACTED}"
    )


def test_scrub_url_leaves_clean_urls_byte_identical():
    # Odd but valid encodings must survive untouched.
    url = "https://graph.facebook.com/v23.0/106540352242922/messages?a=%7e&b=x+y&&c"
    assert redact.scrub_url(url) == url


def test_scrub_url_replaces_secrets_in_any_form():
    url = "http://127.0.0.1:8000/cb?state=" + "s3cret-verify%2Ftoken"
    assert redact.scrub_url(url, [VERIFY]) == f"http://127.0.0.1:8000/cb?state={REDACTED}"


# -- bodies ------------------------------------------------------------------------------


def test_scrub_body_replaces_secrets_in_raw_bodies():
    body = f"grant_type=fb_exchange_token&client_secret={APP_SECRET}&fb_exchange_token={TOKEN}".encode()
    assert redact.scrub_body(body, [APP_SECRET, TOKEN]) == (
        b"grant_type=fb_exchange_token&client_secret=REDACTED&fb_exchange_token=REDACTED"
    )


def test_scrub_body_replaces_json_escaped_secrets():
    # Graph escapes "/" as "\/": the token must go in that form too.
    body = b'{"note":"verify is s3cret-verify\\/token"}'
    assert redact.scrub_body(body, [VERIFY]) == b'{"note":"verify is REDACTED"}'


def test_scrub_body_drops_access_token_keys_at_any_depth():
    body = json.dumps(
        {
            "data": [{"id": "1", "access_token": "PAGE-TOKEN", "nested": {"access_token": "x"}}],
            "access_token": "top",
        },
        indent=2,
    ).encode()
    out = redact.scrub_body(body, [])
    assert json.loads(out) == {"data": [{"id": "1", "nested": {}}]}
    assert out == b'{"data":[{"id":"1","nested":{}}]}'  # compact once changed


def test_scrub_body_scrubs_media_metadata_url():
    body = json.dumps(
        {
            "messaging_product": "whatsapp",
            "url": MEDIA_URL,
            "mime_type": "image/jpeg",
            "sha256": "ab" * 32,
            "file_size": "303833",
            "id": MEDIA_ID,
        }
    ).encode()
    out = json.loads(redact.scrub_body(body, [TOKEN]))
    assert out["url"] == redact.scrub_url(MEDIA_URL)
    assert "hash=" not in out["url"] and "oe=" not in out["url"]
    assert out["id"] == MEDIA_ID


def test_scrub_body_leaves_clean_bodies_byte_identical():
    bodies = [
        b'{ "messaging_product" : "whatsapp",\n  "to": "16505551234" }',
        b'{"text":{"body":"caf\\u00e9 \\/ ok"}}',
        b"EVENT_RECEIVED",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"",
    ]
    for body in bodies:
        assert redact.scrub_body(body, [TOKEN, APP_SECRET, "", VERIFY]) == body


def test_scrub_body_keeps_the_wire_form_of_what_it_rewrites():
    ascii_body = b'{"name":"Zo\\u00eb","access_token":"t"}'
    assert redact.scrub_body(ascii_body, []) == b'{"name":"Zo\\u00eb"}'
    utf8_body = '{"name":"Zoë","access_token":"t"}'.encode()
    assert redact.scrub_body(utf8_body, []) == '{"name":"Zoë"}'.encode()


def test_scrub_body_replaces_secrets_even_when_json_is_invalid():
    body = f'{{"token": "{TOKEN}", '.encode()
    assert redact.scrub_body(body, [TOKEN]) == b'{"token": "REDACTED", '


# -- signatures --------------------------------------------------------------------------


def test_signature_state():
    body = w.dumps(w.inbound_webhook(ACCOUNT, w.message("text", USER, w.text_body("hi"))))
    good = signature.sign(APP_SECRET, body)
    assert redact.signature_state(body, good, APP_SECRET) == "valid"
    assert redact.signature_state(body, signature.forge(body), APP_SECRET) == "invalid"
    assert redact.signature_state(body + b" ", good, APP_SECRET) == "invalid"
    assert redact.signature_state(body, good, None) == "unchecked"
    assert redact.signature_state(body, good, "") == "unchecked"
    assert redact.signature_state(body, None, APP_SECRET) == "absent"
    assert redact.signature_state(body, "", APP_SECRET) == "absent"


# -- pseudonyms --------------------------------------------------------------------------


def _conversation(user: str = USER, name: str = "Zoë Ølsen"):
    """Inbound message, the bot's send, Meta's answer, and the status webhook for it."""
    inbound_wamid = new_wamid(user)
    outbound_wamid = new_wamid(user)
    inbound = w.dumps(
        w.inbound_webhook(
            ACCOUNT,
            w.message(
                "text",
                user,
                w.text_body("Does it come in another color?"),
                wamid=inbound_wamid,
                timestamp="1749416383",
                context={"from": ACCOUNT.display_phone_number, "id": new_wamid(user)},
            ),
            profile_name=name,
        )
    )
    send = json.dumps(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": user,
            "context": {"message_id": inbound_wamid},
            "type": "text",
            "text": {"body": "Yes!"},
        }
    ).encode()
    answer = json.dumps(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": user, "wa_id": user}],
            "messages": [{"id": outbound_wamid}],
        }
    ).encode()
    status = w.dumps(
        w.status_webhook(
            ACCOUNT, [w.status(outbound_wamid, "delivered", user, timestamp="1749416390")]
        )
    )
    return inbound, send, answer, status, inbound_wamid, outbound_wamid


def test_pseudonymizer_is_consistent_across_webhooks_sends_and_answers():
    p = Pseudonymizer()
    inbound, send, answer, status, in_wamid, out_wamid = _conversation()
    inbound2, send2, answer2, status2 = (p.rewrite_body(b) for b in (inbound, send, answer, status))
    fake = p.phone(USER)
    assert fake != USER and len(fake) == len(USER) and fake.startswith("1555")

    hook = json.loads(inbound2)
    value = hook["entry"][0]["changes"][0]["value"]
    msg = value["messages"][0]
    assert msg["from"] == fake
    assert value["contacts"][0] == {"profile": {"name": "User 1"}, "wa_id": fake}
    # The business's own number and ids are untouched, also in a reply's context.
    assert value["metadata"] == ACCOUNT.metadata()
    assert msg["context"]["from"] == ACCOUNT.display_phone_number
    assert hook["entry"][0]["id"] == ACCOUNT.waba_id
    assert msg["id"] == p.wamid(in_wamid) != in_wamid
    assert msg["text"]["body"] == "Does it come in another color?"

    sent = json.loads(send2)
    assert sent["to"] == fake
    assert sent["context"]["message_id"] == msg["id"]

    answered = json.loads(answer2)
    assert answered["contacts"] == [{"input": fake, "wa_id": fake}]
    st = json.loads(status2)["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert st["recipient_id"] == fake
    assert st["id"] == answered["messages"][0]["id"] == p.wamid(out_wamid)

    for body in (inbound2, send2, answer2, status2):
        assert USER.encode() not in body
        assert in_wamid.encode() not in body and out_wamid.encode() not in body


def test_webhook_bodies_stay_in_metas_ascii_wire_form():
    p = Pseudonymizer()
    inbound, *_ = _conversation(name="Zoë Ølsen 😀")
    out = p.rewrite_body(inbound)
    assert out.isascii()
    assert out == w.dumps(json.loads(out))
    assert "Zoë".encode() not in out and b"\\u00eb" not in out


def test_non_ascii_names_map_consistently():
    p = Pseudonymizer()
    assert p.name("Zoë Ølsen") == "User 1"
    assert p.name("李小龍") == "User 2"
    assert p.name("Zoë Ølsen") == "User 1"


def test_wamid_embeds_the_fake_number():
    p = Pseudonymizer()
    real = new_wamid(USER)
    fake = p.wamid(real)
    assert fake.startswith("wamid.") and fake != real
    raw = base64.b64decode(fake.removeprefix("wamid."))
    assert p.phone(USER).encode() in raw and USER.encode() not in raw
    assert p.wamid(real) == fake


def test_wamid_of_unknown_layout_is_still_mapped_stably():
    p = Pseudonymizer()
    fake = p.wamid("wamid.not-base64!!")
    assert fake.startswith("wamid.") and fake == p.wamid("wamid.not-base64!!")
    assert p.wamid("wamid.other") != fake


def test_phone_keeps_formatting_and_maps_equal_digits_together():
    p = Pseudonymizer()
    formatted = p.phone("+1 (650) 555-1234")
    fake = p.phone(USER)
    assert formatted == f"+{fake[0]} ({fake[1:4]}) {fake[4:7]}-{fake[7:]}"


def test_phones_never_collide_even_with_real_numbers_that_look_fake():
    p = Pseudonymizer()
    first = p.phone(USER)  # 15550000001
    # A real number equal to a fake already issued gets a fake of its own.
    second = p.phone(first)
    third = p.phone(OTHER)
    assert len({first, second, third}) == 3
    assert len(third) == len(OTHER)
    # And a fake is never a real number seen before.
    q = Pseudonymizer()
    q.phone("15550000001")
    assert q.phone(USER) != "15550000001"


def test_pseudonymizer_is_deterministic_given_a_seed():
    numbers = [USER, OTHER, "5511987654321"]
    a, b, c = Pseudonymizer(seed=7), Pseudonymizer(seed=7), Pseudonymizer(seed=8)
    assert [a.phone(n) for n in numbers] == [b.phone(n) for n in numbers]
    assert [a.phone(n) for n in numbers] != [c.phone(n) for n in numbers]
    assert Pseudonymizer().phone(USER) == Pseudonymizer().phone(USER)


def test_reserved_fakes_are_not_issued_again():
    p = Pseudonymizer()
    p.reserve(["15550000001", "15550000002"])
    assert p.phone(USER) == "15550000003"


def test_contact_cards_are_pseudonymized():
    p = Pseudonymizer()
    card = {
        "contacts": [
            {
                "name": {"formatted_name": "Ann"},
                "phones": [{"phone": "+1 650-555-1234", "wa_id": USER, "type": "CELL"}],
            }
        ]
    }
    out = p.rewrite(card)
    phone = out["contacts"][0]["phones"][0]
    fake = p.phone(USER)
    assert phone["wa_id"] == fake
    assert phone["phone"] == f"+{fake[0]} {fake[1:4]}-{fake[4:7]}-{fake[7:]}"
    assert phone["type"] == "CELL"
    assert card["contacts"][0]["phones"][0]["wa_id"] == USER  # input not mutated


def test_rewrite_body_leaves_other_bodies_alone():
    p = Pseudonymizer()
    media = json.dumps(
        {
            "messaging_product": "whatsapp",
            "url": MEDIA_URL,
            "id": MEDIA_ID,
            "sha256": "ab" * 32,
            "file_size": "303833",
        },
        indent=1,
    ).encode()
    for body in (b"EVENT_RECEIVED", b"\xff\xd8\xff\xe0JFIF", media, b'{"success":true}', b"[1, 2]"):
        assert p.rewrite_body(body) == body
    # Non-phone values in phone fields (a group id with letters) stay as they are.
    assert p.rewrite({"to": "group-abc"}) == {"to": "group-abc"}
