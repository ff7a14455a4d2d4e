"""X-Hub-Signature-256: what a receiver verifying Meta's signature relies on."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from pseudowa.proxy.contract import signature
from pseudowa.proxy.contract import webhooks

SECRET = "app-secret-\u00e9"  # a secret with a non-ASCII character, as UTF-8 bytes
PAYLOAD = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "1",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "text": '\u00e4\u00f6\u00e5 \u00c4\u00ff caf\u00e9 \U0001f600 \u4f60\u597d / "q" \\',
                    },
                }
            ],
        }
    ],
}


def independent_hmac(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def test_dumps_is_ascii_with_lowercase_escapes_and_compact() -> None:
    body = webhooks.dumps(PAYLOAD)
    text = body.decode("ascii")  # raises if any byte is not ASCII
    escapes = re.findall(r"\\u([0-9a-fA-F]{4})", text)
    assert escapes, "non-ASCII text must be escaped"
    assert all(e == e.lower() for e in escapes), escapes
    assert "\\u00e4\\u00f6\\u00e5" in text  # Meta's documented example
    assert "\\u00c4" in text and "\\u00ff" in text  # hex letters in lowercase
    assert "\\ud83d\\ude00" in text  # astral characters as a surrogate pair
    assert ", " not in text and ": " not in text  # compact separators
    assert json.loads(body) == PAYLOAD


def test_sign_equals_independent_hmac_over_exact_bytes() -> None:
    body = webhooks.dumps(PAYLOAD)
    header = signature.sign(SECRET, body)
    assert header == independent_hmac(SECRET, body)
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", header)
    assert signature.sign(SECRET.encode(), body) == header  # str and bytes secrets agree


def test_signature_covers_bytes_not_json_meaning() -> None:
    """Re-serializing the same JSON differently breaks the signature, as with Meta."""
    body = webhooks.dumps(PAYLOAD)
    header = signature.sign(SECRET, body)
    reserialized = json.dumps(PAYLOAD, ensure_ascii=False).encode("utf-8")
    assert json.loads(reserialized) == json.loads(body)
    assert not signature.verify(SECRET, reserialized, header)


def test_verify_accepts_the_real_signature() -> None:
    body = webhooks.dumps(PAYLOAD)
    assert signature.verify(SECRET, body, signature.sign(SECRET, body))
    assert signature.verify(SECRET, body, independent_hmac(SECRET, body))


def test_verify_rejects_tampered_body() -> None:
    body = webhooks.dumps(PAYLOAD)
    header = signature.sign(SECRET, body)
    tampered = body.replace(b"\\u00e4", b"\\u00e5", 1)
    assert tampered != body
    assert not signature.verify(SECRET, tampered, header)
    assert not signature.verify(SECRET, body + b" ", header)


def test_verify_rejects_wrong_secret() -> None:
    body = webhooks.dumps(PAYLOAD)
    assert not signature.verify("other-secret", body, signature.sign(SECRET, body))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h[len("sha256=") :],  # missing prefix
        lambda h: "sha1=" + h[len("sha256=") :],
        lambda h: "SHA256=" + h[len("sha256=") :],
        lambda h: "sha256=" + h[len("sha256=") :].upper(),  # Meta sends lowercase hex
        lambda h: h[:-1],
        lambda h: "",
        lambda h: None,
        lambda h: "sha256=\u00e4" + h[8:],  # non-ASCII garbage must not crash the check
    ],
)
def test_verify_rejects_malformed_headers(mangle) -> None:
    body = webhooks.dumps(PAYLOAD)
    header = signature.sign(SECRET, body)
    assert header[len("sha256=") :] != header[len("sha256=") :].upper()  # has hex letters
    assert signature.verify(SECRET, body, mangle(header)) is False


def test_forge_is_well_formed_but_never_verifies() -> None:
    for i in range(200):
        body = webhooks.dumps({"i": i, "text": "\u00e9" * i})
        forged = signature.forge(body)
        assert re.fullmatch(r"sha256=[0-9a-f]{64}", forged)
        for secret in (SECRET, "", "pseudowa-forged:", b"\x00"):
            assert not signature.verify(secret, body, forged)
