"""Opening a store for reading (`upgrade=False`) writes nothing, and refuses a newer schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy import text

from pseudowa.storage import migrate
from pseudowa.storage.engine import make_engine
from pseudowa.storage.engine import parse_url
from pseudowa.storage.errors import CassetteNotFound
from pseudowa.storage.errors import SchemaError
from pseudowa.storage.store import CassetteStore


def test_reading_a_missing_file_creates_neither_it_nor_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "store.db"
    with CassetteStore.open(f"sqlite:///{path}", upgrade=False) as store:
        assert store.schema_revision() is None
        assert store.list_cassettes() == []
        assert str(path) in store.url
        with pytest.raises(CassetteNotFound, match="no cassettes yet"):
            store.get_cassette("greeting")
    assert not (tmp_path / "not").exists()


def test_reading_an_empty_file_leaves_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch()
    with CassetteStore.open(f"sqlite:///{path}", upgrade=False) as store:
        assert store.schema_revision() is None
        assert store.list_cassettes() == []
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def test_reading_a_database_without_schema_creates_no_table(store_url: str) -> None:
    # On PostgreSQL the database exists but holds nothing of ours.
    with CassetteStore.open(store_url, upgrade=False) as store:
        assert store.list_cassettes() == []
        assert store.schema_revision() is None
    engine = make_engine(parse_url(store_url), pooled=False)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_reading_a_store_keeps_what_it_holds(store_url: str) -> None:
    with CassetteStore.open(store_url) as store:
        store.create_cassette("kept")
    with CassetteStore.open(store_url, upgrade=False) as store:
        assert [c.name for c in store.list_cassettes()] == ["kept"]
        assert store.schema_revision() == migrate.head()


@pytest.mark.parametrize("upgrade", [True, False])
def test_a_store_written_by_a_newer_pseudowa_is_refused(store_url: str, upgrade: bool) -> None:
    with CassetteStore.open(store_url) as store:
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999_future'"))
    with pytest.raises(SchemaError) as caught:
        CassetteStore.open(store_url, upgrade=upgrade)
    message = str(caught.value)
    assert "written by a newer pseudowa" in message and "9999_future" in message
    assert "\n" not in message
