"""The ORM tables as the migrated database has them: what the store relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Inspector
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pseudowa.storage import models as m
from pseudowa.storage.store import CassetteStore

TABLES = {"cassette", "interaction", "event", "media_blob", "media_chunk", "media_link", "history"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
def store(url: str) -> Iterator[CassetteStore]:
    s = CassetteStore.open(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def insp(store: CassetteStore, url: str) -> Iterator[Inspector]:
    """An inspector on an engine of its own: the file as any SQLite client sees it.

    (The store's pooled connection predates the migration; SQLite's PRAGMAs on it can
    answer from a stale schema, which would make reflection see no constraints.)
    """
    engine = create_engine(url)
    try:
        yield inspect(engine)
    finally:
        engine.dispose()


def _fks(insp: Inspector, table: str) -> dict[tuple[str, ...], ReflectedForeignKeyConstraint]:
    return {tuple(fk["constrained_columns"]): fk for fk in insp.get_foreign_keys(table)}


def _uniques(insp: Inspector, table: str) -> list[list[str]]:
    return [u["column_names"] for u in insp.get_unique_constraints(table)]


def test_models_name_the_store_tables() -> None:
    assert set(m.Base.metadata.tables) == TABLES


def test_migrated_database_matches_the_models(insp: Inspector) -> None:
    assert TABLES <= set(insp.get_table_names())
    for name, table in m.Base.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == set(table.columns.keys()), name


def test_constraint_names_follow_the_convention(insp: Inspector) -> None:
    # Alembic's batch mode on SQLite drops constraints by these names.
    assert insp.get_pk_constraint("cassette")["name"] == "pk_cassette"
    assert {u["name"] for u in insp.get_unique_constraints("cassette")} == {"uq_cassette_name"}
    assert "fk_interaction_cassette_id_cassette" in {
        fk["name"] for fk in insp.get_foreign_keys("interaction")
    }


def test_cassette_name_is_unique(insp: Inspector, store: CassetteStore) -> None:
    assert ["name"] in _uniques(insp, "cassette")
    with Session(store.engine) as s:
        s.add(m.Cassette(name="same"))
        s.commit()
        s.add(m.Cassette(name="same"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_interaction_seq_is_unique_per_cassette(insp: Inspector) -> None:
    assert ["cassette_id", "seq"] in _uniques(insp, "interaction")


def test_media_id_is_unique_per_cassette(insp: Inspector) -> None:
    assert ["cassette_id", "media_id"] in _uniques(insp, "media_link")


def test_blobs_are_keyed_by_sha256(insp: Inspector, store: CassetteStore) -> None:
    assert insp.get_pk_constraint("media_blob")["constrained_columns"] == ["sha256"]
    assert insp.get_pk_constraint("media_chunk")["constrained_columns"] == ["sha256", "seq"]
    assert _fks(insp, "media_link")[("sha256",)]["referred_table"] == "media_blob"
    # The same bytes stored twice are one blob.
    a = store.put_media(b"same bytes", "image/png")
    b = store.put_media(b"same bytes", "image/png")
    assert a.sha256 == b.sha256
    with Session(store.engine) as s:
        assert s.scalar(select(func.count()).select_from(m.MediaBlob)) == 1


@pytest.mark.parametrize(
    ("table", "column", "parent"),
    [
        ("interaction", "cassette_id", "cassette"),
        ("event", "cassette_id", "cassette"),
        ("event", "interaction_id", "interaction"),
        ("media_link", "cassette_id", "cassette"),
        ("history", "cassette_id", "cassette"),
        ("media_chunk", "sha256", "media_blob"),
    ],
)
def test_children_cascade_from_their_parent(
    insp: Inspector, table: str, column: str, parent: str
) -> None:
    fk = _fks(insp, table)[(column,)]
    assert fk["referred_table"] == parent
    assert fk["options"].get("ondelete") == "CASCADE"


def test_a_linked_blob_is_not_deleted_by_cascade(insp: Inspector) -> None:
    # Blobs are shared between cassettes: the store collects them, the database must not.
    assert "ondelete" not in _fks(insp, "media_link")[("sha256",)]["options"]


def test_deleting_a_cassette_row_deletes_its_interactions(store: CassetteStore) -> None:
    from pseudowa.storage.records import EventData
    from pseudowa.storage.records import Exchange

    store.create_cassette("gone")
    store.create_cassette("kept")
    for name in ("gone", "kept"):
        store.append(
            name,
            Exchange("webhook", "POST", "http://bot/webhook", started_at=1.0, finished_at=2.0),
            [EventData(wamid=f"wamid.{name}", category="message", type="text")],
        )
        store.add_history(name, "recorded", {})
    with Session(store.engine) as s, s.begin():
        # The row alone, as a foreign-key-enforcing database deletes it.
        s.execute(delete(m.Cassette).where(m.Cassette.name == "gone"))
    with Session(store.engine) as s:
        for model in (m.Interaction, m.Event, m.History):
            assert s.scalar(select(func.count()).select_from(model)) == 1, model.__tablename__
    assert [x.url for x in store.interactions("kept")] == ["http://bot/webhook"]


def test_the_orm_relationship_cascades(store: CassetteStore) -> None:
    with Session(store.engine) as s:
        c = m.Cassette(name="orm")
        c.interactions.append(
            m.Interaction(
                seq=0, kind="graph", method="GET", url="u", started_at=0.0, finished_at=0.0
            )
        )
        s.add(c)
        s.commit()
        assert c.interactions[0].cassette is c
        s.delete(c)
        s.commit()
        assert s.scalar(select(func.count()).select_from(m.Interaction)) == 0


def test_defaults_of_a_new_cassette(store: CassetteStore) -> None:
    with Session(store.engine) as s:
        c = m.Cassette(name="defaults")
        s.add(c)
        s.commit()
        assert c.source == "meta"
        assert c.notes == ""
        assert c.phone_number_ids == []
        assert c.graph_api_version is None
        assert c.created_at is not None


def test_utcnow_is_timezone_aware() -> None:
    now = m.utcnow()
    offset = now.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
