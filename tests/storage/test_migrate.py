"""Schema migrations and what `CassetteStore.open` refuses, on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pg import create_database
from pg import drop_database
from pg import free_port
from sqlalchemy import inspect
from sqlalchemy import text

from pseudowa.storage import migrate
from pseudowa.storage.engine import make_engine
from pseudowa.storage.engine import parse_url
from pseudowa.storage.errors import DatabaseUnavailable
from pseudowa.storage.errors import SchemaError
from pseudowa.storage.models import Base
from pseudowa.storage.store import CassetteStore

OUR_TABLES = set(Base.metadata.tables)


def _tables(store: CassetteStore) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def test_upgrade_empty_database_to_head_has_no_drift(store_url: str) -> None:
    # upgrade=False first: a database never migrated reports no revision.
    with CassetteStore.open(store_url, upgrade=False) as bare:
        assert bare.schema_revision() is None
    engine = make_engine(parse_url(store_url), pooled=False)
    try:
        # Opening without upgrade reads an empty store and creates nothing.
        assert set(inspect(engine).get_table_names()) & OUR_TABLES == set()
    finally:
        engine.dispose()

    with CassetteStore.open(store_url) as store:
        assert store.schema_revision() == migrate.head()
        assert OUR_TABLES <= _tables(store)
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
            )
            # Anything here means the models and the migrations disagree: a
            # database built by `upgrade` would not be what the code expects.
            assert compare_metadata(ctx, Base.metadata) == []


def test_reopening_keeps_data_and_revision(store_url: str) -> None:
    with CassetteStore.open(store_url) as store:
        store.create_cassette("kept", notes="across opens")
    with CassetteStore.open(store_url) as store:
        assert store.get_cassette("kept").notes == "across opens"
        assert store.schema_revision() == migrate.head()


def test_downgrade_to_base_drops_all_our_tables(store_url: str) -> None:
    with CassetteStore.open(store_url) as store:
        store.create_cassette("doomed")
        migrate.downgrade(parse_url(store_url), store.engine)
        assert _tables(store) & OUR_TABLES == set()
        assert store.schema_revision() is None
        # And back up again from nothing.
        migrate.upgrade(parse_url(store_url), store.engine)
        assert store.schema_revision() == migrate.head()
        assert store.list_cassettes() == []


def test_database_from_a_newer_pseudowa_is_refused(store_url: str) -> None:
    with CassetteStore.open(store_url) as store:
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999_future'"))
    with pytest.raises(SchemaError, match="newer pseudowa"):
        CassetteStore.open(store_url)


def test_postgresql_where_nothing_listens_is_one_line_unavailable() -> None:
    port = free_port()
    url = f"postgresql://bot:hunter2@127.0.0.1:{port}/pseudowa"

    with pytest.raises(DatabaseUnavailable) as caught:
        CassetteStore.open(url)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot open database")
    assert str(port) in message and "hunter2" not in message


@contextmanager
def _pg_database(pg_url: str, name: str) -> Iterator[str]:
    """A fresh database `name` beside the session's one, dropped afterwards."""
    admin = pg_url.rsplit("/", 1)[0] + "/postgres"
    drop_database(admin, name)
    create_database(admin, name)
    try:
        yield pg_url.rsplit("/", 1)[0] + "/" + name
    finally:
        drop_database(admin, name)


def test_postgresql_database_with_our_table_names_is_refused(pg_url: str) -> None:
    # A shared database may hold other applications' tables, but one already
    # named like ours would be written into by mistake.
    with _pg_database(pg_url, "foreign_cassette") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE cassette (id int, label text)")

        with pytest.raises(DatabaseUnavailable, match=r"did not create \(cassette\)"):
            CassetteStore.open(url)

        with psycopg.connect(url) as conn:
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'cassette' ORDER BY ordinal_position"
            ).fetchall()
            assert columns == [("id",), ("label",)]
            versions = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = %s",
                (migrate.VERSION_TABLE,),
            ).fetchone()
            assert versions == (0,)


def test_postgresql_database_shared_with_other_tables_is_accepted(pg_url: str) -> None:
    with _pg_database(pg_url, "shared_db") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE invoices (id int)")
        with CassetteStore.open(url) as store:
            store.create_cassette("c")
            assert {"invoices", "cassette"} <= _tables(store)
            assert store.schema_revision() == migrate.head()


def test_schema_revision_equals_head(store_url: str) -> None:
    with CassetteStore.open(store_url) as store:
        assert store.schema_revision() == migrate.head()
        assert migrate.current(store.engine) == migrate.head()
    # A second engine, as another process would have, sees the same revision.
    engine = make_engine(parse_url(store_url), pooled=False)
    try:
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def _storage_imports(module: str) -> set[str]:
    """The storage modules `storage/<module>.py` imports, function-level imports included."""
    source = Path(migrate.__file__).with_name(f"{module}.py").read_text()
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
    return found


def test_migrate_makes_its_engine_without_the_store() -> None:
    # The store runs the migrations, so migrate importing the store (even inside a
    # function, as it once did for make_engine) would close a circle.
    assert "store" not in _storage_imports("migrate")
    assert "engine" in _storage_imports("migrate")
    assert _storage_imports("engine") <= {"errors"}
