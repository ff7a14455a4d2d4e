"""Identifiers: what a bot sees of wamids, media ids, trace ids and conversation ids."""

from __future__ import annotations

import base64
import re

from pseudowa.proxy.contract.ids import is_wamid
from pseudowa.proxy.contract.ids import new_conversation_id
from pseudowa.proxy.contract.ids import new_fbtrace_id
from pseudowa.proxy.contract.ids import new_media_id
from pseudowa.proxy.contract.ids import new_wamid


def test_wamid_has_meta_prefix_and_base64_payload() -> None:
    wamid = new_wamid("+1 650-555-1234")
    assert wamid.startswith("wamid.")
    raw = base64.b64decode(wamid[len("wamid."):], validate=True)
    # The counterpart's number, digits only, is encoded as Meta's wamids do.
    assert b"16505551234" in raw
    assert is_wamid(wamid)


def test_wamid_without_recipient_is_still_valid() -> None:
    wamid = new_wamid()
    assert wamid.startswith("wamid.")
    base64.b64decode(wamid[len("wamid."):], validate=True)


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
