"""Signed media download URLs: valid for five minutes, unforgeable, 404 when not."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from pseudowa.proxy.contract import media_url

SECRET = b"sandbox-secret"
NOW = 1_750_000_000.25
MID = "1037543291543636"


def fields(signed: media_url.SignedMedia) -> tuple[str, str, str]:
    q = parse_qs(signed.query())
    return q["mid"][0], q["ext"][0], q["hash"][0]


def test_round_trip_through_the_query_string() -> None:
    signed = media_url.sign(SECRET, MID, now=NOW)
    assert signed.ext == int(NOW + 300)  # Meta: five minutes
    mid, ext, sig = fields(signed)
    assert mid == MID
    assert media_url.check(SECRET, mid, ext, sig, now=NOW) == MID
    assert media_url.check(SECRET, mid, ext, sig, now=NOW + 299) == MID


def test_default_now_is_the_clock() -> None:
    signed = media_url.sign(SECRET, MID)
    assert media_url.check(SECRET, *fields(signed)) == MID


def test_expired_url_rejected() -> None:
    mid, ext, sig = fields(media_url.sign(SECRET, MID, now=NOW))
    assert media_url.check(SECRET, mid, ext, sig, now=int(ext)) is None
    assert media_url.check(SECRET, mid, ext, sig, now=NOW + 301) is None


def test_ttl_zero_is_already_expired() -> None:
    mid, ext, sig = fields(media_url.sign(SECRET, MID, ttl_s=0, now=NOW))
    assert media_url.check(SECRET, mid, ext, sig, now=NOW) is None
    whole = media_url.sign(SECRET, MID, ttl_s=0, now=1_750_000_000)
    assert media_url.check(SECRET, *fields(whole), now=1_750_000_000) is None


def test_tampered_fields_rejected() -> None:
    mid, ext, sig = fields(media_url.sign(SECRET, MID, now=NOW))
    other = media_url.sign(SECRET, "9999999999999999", now=NOW)
    assert media_url.check(SECRET, "9999999999999999", ext, sig, now=NOW) is None  # other media
    assert media_url.check(SECRET, mid, str(int(ext) + 3600), sig, now=NOW) is None  # extended
    assert (
        media_url.check(SECRET, mid, ext, sig[:-1] + ("0" if sig[-1] != "0" else "1"), now=NOW)
        is None
    )
    assert media_url.check(SECRET, mid, ext, other.hash, now=NOW) is None  # hash of another
    assert media_url.check(b"other-secret", mid, ext, sig, now=NOW) is None


@pytest.mark.parametrize(
    ("mid", "ext", "sig"),
    [
        (None, "1", "a"),
        ("1", None, "a"),
        ("1", "1", None),
        ("", "1", "a"),
        ("1", "soon", "a"),
        ("1", "1.5", "a"),
        ("1", "9" * 5000, "a"),
        (MID, "1750000300", "\u00e4" * 40),  # non-ASCII must not crash the handler
    ],
)
def test_garbage_rejected(mid, ext, sig) -> None:
    assert media_url.check(SECRET, mid, ext, sig, now=NOW) is None


def test_query_has_the_three_fields() -> None:
    signed = media_url.sign(SECRET, MID, now=NOW)
    assert set(parse_qs(signed.query())) == {"mid", "ext", "hash"}
    assert media_url.DOWNLOAD_PATH == "/whatsapp_business/attachments/"
