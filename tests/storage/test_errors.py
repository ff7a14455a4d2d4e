"""The store's error tree: one base for the CLI to catch, one actionable line each."""

from __future__ import annotations

import pytest

from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import CassetteNotFound
from pseudowa.storage.errors import DatabaseUnavailable
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.errors import SchemaError
from pseudowa.storage.errors import StoreError


@pytest.mark.parametrize(
    "error",
    [
        DatabaseUnavailable("cannot open database x"),
        SchemaError("cannot migrate"),
        CassetteNotFound("x"),
        CassetteExists("x"),
        MediaNotFound("c", "m"),
    ],
)
def test_every_store_error_is_a_one_line_store_error(error: StoreError) -> None:
    assert isinstance(error, StoreError)
    assert "\n" not in str(error)


def test_cassette_not_found_suggests_close_names_else_lists_them() -> None:
    close = CassetteNotFound("welcom", ["welcome", "order-status"])
    assert str(close) == "no cassette named 'welcom'; did you mean 'welcome'?"
    assert close.name == "welcom"
    far = CassetteNotFound("zzz", ["b", "a"])
    assert str(far) == "no cassette named 'zzz'; cassettes: a, b"
    assert str(CassetteNotFound("x")).endswith("; the store has no cassettes yet")


def test_exists_and_media_errors_keep_what_they_name() -> None:
    exists = CassetteExists("img")
    assert (exists.name, str(exists)) == ("img", "a cassette named 'img' already exists")
    missing = MediaNotFound("img", "123")
    assert (missing.cassette, missing.media_id) == ("img", "123")
    assert str(missing) == "cassette 'img' has no media with id '123'"
