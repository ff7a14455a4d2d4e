"""Identifiers: what a bot sees of wamids, media ids, trace ids, conversation ids, sha256 forms."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from pseudowa.proxy.contract.ids import is_wamid
from pseudowa.proxy.contract.ids import new_conversation_id
from pseudowa.proxy.contract.ids import new_fbtrace_id
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.contract.ids import new_wamid
from pseudowa.proxy.contract.ids import sha256_hex
from pseudowa.proxy.contract.ids import sha256_hex_to_b64
from pseudowa.proxy.contract.ids import wamid_number
from pseudowa.proxy.contract.ids import wamid_with_number
from pseudowa.proxy.contract.webhooks import sha256_b64


def test_wamid_has_meta_prefix_and_base64_payload() -> None:
    wamid = new_wamid("+1 650-555-1234")
    assert wamid.startswith("wamid.")
    raw = base64.b64decode(wamid[len("wamid.") :], validate=True)
    # The counterpart's number, digits only, is encoded as Meta's wamids do.
    assert b"16505551234" in raw
    assert is_wamid(wamid)


def test_wamid_without_recipient_is_still_valid() -> None:
    wamid = new_wamid()
    assert wamid.startswith("wamid.")
    base64.b64decode(wamid[len("wamid.") :], validate=True)


def test_wamids_are_unique_over_10k() -> None:
    ids = [new_wamid("16505551234") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("wamid.") for i in ids)


def test_is_wamid_rejects_non_wamids() -> None:
    assert not is_wamid("wamid.")
    assert not is_wamid("WAMID.abc")
    assert not is_wamid("1234567890123456")
    assert not is_wamid(None)
    assert not is_wamid(b"wamid.abc")
    assert is_wamid("wamid.HBgL")


def test_media_ids_are_16_digits_and_unique() -> None:
    ids = [new_media_id() for _ in range(5_000)]
    assert all(re.fullmatch(r"[1-9]\d{15}", i) for i in ids), ids[:5]
    assert len(set(ids)) == len(ids)


def test_fbtrace_id_shape() -> None:
    ids = {new_fbtrace_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    for i in ids:
        # Meta's look like "Az8or2yhqkZfEZ-_4Qn_Bam": 23 url-safe base64 characters.
        assert re.fullmatch(r"[A-Za-z0-9_-]{23}", i), i


def test_conversation_id_is_32_hex() -> None:
    ids = {new_conversation_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_wamid_number_reads_meta_layout() -> None:
    assert wamid_number(new_wamid("+1 650-555-1234")) == "16505551234"
    assert wamid_number(new_wamid()) is None  # no recipient: no number to read
    assert wamid_number("wamid.out1") is None  # not base64 of Meta's layout
    short = base64.b64encode(b"\x1c\x18\x09123").decode()
    assert wamid_number(f"wamid.{short}") is None
    letters = base64.b64encode(b"\x1c\x18\x0312a").decode()
    assert wamid_number(f"wamid.{letters}") is None


def test_wamid_with_number_swaps_only_the_number() -> None:
    real = new_wamid("16505551234")
    fake = wamid_with_number(real, "15550000001")
    assert fake is not None and fake != real and fake.startswith("wamid.")
    assert wamid_number(fake) == "15550000001"
    # The opaque id after the number is kept byte for byte.
    raw_real = base64.b64decode(real[len("wamid.") :])
    raw_fake = base64.b64decode(fake[len("wamid.") :])
    assert raw_fake[3 + 11 :] == raw_real[3 + 11 :]
    assert wamid_with_number("wamid.out1", "15550000001") is None


def test_wamid_with_number_keeps_missing_padding() -> None:
    raw = b"\x1c\x18\x0b16505551234\x15\x02\x00\x11\x18\x12ABCDEF"
    padded = "wamid." + base64.b64encode(raw).decode()
    assert padded.endswith("=")
    assert wamid_with_number(padded, "15550000001").endswith("=")
    # A different length re-encodes the length byte.
    assert wamid_number(wamid_with_number(padded, "4915550001")) == "4915550001"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("ab" * 32, "ab" * 32),
        ("AB" * 32, "ab" * 32),
        (sha256_b64(b"x"), hashlib.sha256(b"x").hexdigest()),
        ("not a hash", None),
        (None, None),
        ("aGk=", None),
    ],
)
def test_sha256_hex(value: object, expected: str | None) -> None:
    assert sha256_hex(value) == expected


def test_sha256_hex_to_b64_is_the_webhook_form() -> None:
    digest = hashlib.sha256(b"media bytes")
    assert sha256_hex_to_b64(digest.hexdigest()) == sha256_b64(b"media bytes")
    assert sha256_hex(sha256_hex_to_b64(digest.hexdigest())) == digest.hexdigest()
    with pytest.raises(ValueError):
        sha256_hex_to_b64("not hex")


def test_a_phone_number_is_its_digits_as_a_wa_id() -> None:
    from pseudowa.proxy.contract.ids import wa_id_of

    assert wa_id_of("+1 (650) 555-1234") == "16505551234"
    assert wa_id_of("alice") == ""
