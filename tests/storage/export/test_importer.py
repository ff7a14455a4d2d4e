"""Import: names, events indexed again, all or nothing, and the throwaway `temporary_import`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.tape import index_exchange as index_events
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.errors import StoreError
from pseudowa.storage.export import CASSETTE_FILE
from pseudowa.storage.export import export_cassette
from pseudowa.storage.export import import_cassette
from pseudowa.storage.export import temporary_import
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore


def test_events_are_reindexed_on_import(
    store: CassetteStore, fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    seeds.text_seed(store, "texts")
    original = store.events("texts")
    assert [e.type for e in original] == ["text", "text", "interactive"]
    export_cassette(store, "texts", tmp_path / "texts")
    doc = json.loads((tmp_path / "texts" / CASSETTE_FILE).read_bytes())
    assert "events" not in doc
    indexed = fresh("indexed")
    import_cassette(indexed, tmp_path / "texts", index_events=index_events)
    assert indexed.events("texts") == original
    bare = fresh("bare")
    assert import_cassette(bare, tmp_path / "texts").event_count == 0


# -- import: names ----------------------------------------------------------------------------


def test_import_refuses_an_existing_name_unless_replace(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    store = fresh("s")
    seeds.image_seed(store, "img")
    export_cassette(store, "img", tmp_path / "img")
    with pytest.raises(CassetteExists):
        import_cassette(store, tmp_path / "img")
    info = import_cassette(store, tmp_path / "img", "img-copy")
    assert info.name == "img-copy" and info.media_count == 1
    assert import_cassette(store, tmp_path / "img", replace=True).name == "img"
    assert sorted(c.name for c in store.list_cassettes()) == ["img", "img-copy"]


def test_failed_import_leaves_the_store_as_it_was(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    store = fresh("s")
    seeds.image_seed(store, "img")
    export_cassette(store, "img", tmp_path / "img")
    before = store.list_cassettes()

    def broken(_x: Exchange) -> list[Any]:
        raise StoreError("indexer failed")

    with pytest.raises(StoreError, match="indexer failed"):
        import_cassette(store, tmp_path / "img", replace=True, index_events=broken)
    assert store.list_cassettes() == before  # no staging cassette left, original intact


def test_temporary_import_is_deleted_on_exit(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    source = fresh("source")
    seeds.text_seed(source, "texts")
    export_cassette(source, "texts", tmp_path / "texts")

    with temporary_import(tmp_path / "texts", index_events) as (store, name):
        assert name == "texts"
        assert store.events(name) == source.events("texts")
        database = Path(str(store.engine.url.database))
        assert database.is_file()
    assert not database.exists() and not database.parent.exists()


def test_temporary_import_without_an_indexer_has_no_events(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    source = fresh("source")
    seeds.text_seed(source, "texts")
    export_cassette(source, "texts", tmp_path / "texts")
    with temporary_import(tmp_path / "texts") as (store, name):
        assert store.get_cassette(name).event_count == 0
        assert store.get_cassette(name).interaction_count == len(list(source.interactions("texts")))


def test_temporary_import_of_a_broken_export_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="holds no cassette.json"):
        with temporary_import(tmp_path):
            pytest.fail("a directory without cassette.json was imported")
