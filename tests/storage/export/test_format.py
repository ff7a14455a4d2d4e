"""The export format's pieces on their own: the file form, JSON body forms, media names."""

from __future__ import annotations

import json

import pytest

from pseudowa.storage.export.format import JSON_ENCODINGS
from pseudowa.storage.export.format import MAX_JSON_DEPTH
from pseudowa.storage.export.format import dumps_document
from pseudowa.storage.export.format import encode_json
from pseudowa.storage.export.format import json_form
from pseudowa.storage.export.format import media_path

SHA = "ab" * 32


def test_document_is_indented_utf8_with_scalar_arrays_on_one_line() -> None:
    doc = {"b": {"headers": [["a", "1"], ["b", "2"]], "empty": {}, "none": []}, "a": "ü ✓"}
    assert dumps_document(doc) == (
        b'{\n  "b": {\n    "headers": [\n      ["a", "1"],\n      ["b", "2"]\n    ],\n'
        b'    "empty": {},\n    "none": []\n  },\n  "a": "\xc3\xbc \xe2\x9c\x93"\n}\n'
    )


def test_document_keeps_the_callers_key_order_and_escapes_lone_surrogates() -> None:
    text = dumps_document({"z": 1, "a": "\ud800x"}).decode("utf-8")
    assert text.index('"z"') < text.index('"a"')
    assert '"\\ud800x"' in text
    assert json.loads(text) == {"z": 1, "a": "\ud800x"}


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b'{"a":"\\u00fc"}', "compact-ascii"),
        (b'{"a":"/"}', "compact-ascii"),
        (b'{"a":"\\/"}', "compact-ascii-slash"),
        ('{"a":"ü"}'.encode(), "compact-utf8"),
        (b'{"a": 1, "b": [1, 2]}', "spaced-ascii"),
        (b"[1,2]", "compact-ascii"),
    ],
)
def test_json_bodies_name_the_encoding_that_gives_their_bytes_back(
    body: bytes, encoding: str
) -> None:
    found, value = json_form(body)
    assert found == encoding
    assert encode_json(value, encoding) == body


@pytest.mark.parametrize(
    "body",
    [b"", b"plain", b'{"a":1,"a":2}', b'{\n "a": 1}', b'{"a":NaN}', b"\xff{", b"{oops"],
)
def test_bodies_that_no_encoding_reproduces_are_not_json_forms(body: bytes) -> None:
    assert json_form(body) == (None, None)


def test_too_deep_json_is_not_a_json_form() -> None:
    body = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    assert json_form(body) == (None, None)
    shallow = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_form(shallow)[0] == "compact-ascii"


def test_encode_json_refuses_what_json_cannot_hold() -> None:
    assert encode_json(float("nan"), "compact-ascii") is None
    assert encode_json({"a": "\ud800"}, "compact-utf8") is None
    assert set(JSON_ENCODINGS) >= {"compact-ascii", "spaced-utf8-slash"}


@pytest.mark.parametrize(
    ("mime", "name"),
    [
        ("image/png", f"media/{SHA}.png"),
        ("image/JPEG; charset=binary", f"media/{SHA}.jpg"),
        ("audio/ogg; codecs=opus", f"media/{SHA}.ogg"),
        ("application/x-unknown", f"media/{SHA}"),
    ],
)
def test_media_files_are_named_by_sha256_and_a_fixed_extension_table(mime: str, name: str) -> None:
    assert media_path(SHA, mime) == name
