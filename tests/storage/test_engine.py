"""From a URL to an engine: parsing, the read-only SQLite file check, connection pragmas.

The refusals are also checked through `CassetteStore.open`, the way users meet them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from pseudowa.storage.engine import SQLITE_BUSY_TIMEOUT_MS
from pseudowa.storage.engine import describe_url
from pseudowa.storage.engine import existing_sqlite_file
from pseudowa.storage.engine import make_engine
from pseudowa.storage.engine import parse_url
from pseudowa.storage.errors import DatabaseUnavailable
from pseudowa.storage.store import CassetteStore


def _siblings(path: Path) -> list[str]:
    """Files next to `path` (a -wal or -shm would mean SQLite opened it for writing)."""
    return sorted(p.name for p in path.parent.iterdir())


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_use_the_psycopg_driver(scheme: str) -> None:
    url = parse_url(f"{scheme}://bot:hunter2@db.internal:5432/pseudowa")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("db.internal", 5432, "pseudowa")


def test_sqlite_url_is_kept_as_given() -> None:
    assert str(parse_url("sqlite:///cassettes/pseudowa.db")) == "sqlite:///cassettes/pseudowa.db"


def test_describe_url_hides_the_password() -> None:
    shown = describe_url(parse_url("postgresql://bot:hunter2@db.internal/pseudowa"))
    assert "hunter2" not in shown
    assert shown == "postgresql+psycopg://bot:***@db.internal/pseudowa"


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://user@localhost:54x2/db",
        "mysql://user@localhost/db",
        "nosuchdb://somewhere",
    ],
)
def test_malformed_or_unsupported_url_is_database_unavailable(url: str) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        CassetteStore.open(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "sqlite:///" in message and "postgresql://" in message  # says what would work


def test_malformed_url_does_not_echo_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        CassetteStore.open("postgresql://bot:hunter2@db.internal:54x2/pseudowa")
    assert "hunter2" not in str(caught.value)
    assert "bot:***@db.internal" in str(caught.value)


# -- the SQLite file, before any engine connects --------------------------------------------


def test_open_of_text_file_is_refused_and_leaves_it_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    original = b"my shopping list\nnot a database\n" * 100
    notes.write_bytes(original)

    with pytest.raises(DatabaseUnavailable, match="is not a SQLite database") as caught:
        CassetteStore.open(f"sqlite:///{notes}")

    assert "\n" not in str(caught.value)
    assert notes.read_bytes() == original
    assert _siblings(notes) == ["notes.db"]


def test_sqlite_file_with_foreign_tables_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "crm.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.commit()
    conn.close()
    original = other.read_bytes()

    with pytest.raises(DatabaseUnavailable, match=r"tables pseudowa did not create \(customers\)"):
        CassetteStore.open(f"sqlite:///{other}")

    # Byte-identical: not even switched to WAL (which rewrites the header).
    assert other.read_bytes() == original
    assert _siblings(other) == ["crm.db"]


def test_sqlite_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="is a directory"):
        CassetteStore.open(f"sqlite:///{tmp_path}")


def test_existing_file_lists_its_tables_read_only(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    original = path.read_bytes()

    found = existing_sqlite_file(parse_url(f"sqlite:///{path}"))

    assert found is not None
    assert (found.path, found.tables) == (path, frozenset({"customers"}))
    assert path.read_bytes() == original and _siblings(path) == ["crm.db"]


def test_missing_file_gets_its_folder_and_nothing_to_check(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "store.db"
    assert existing_sqlite_file(parse_url(f"sqlite:///{path}")) is None
    assert path.parent.is_dir() and not path.exists()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "postgresql://bot@localhost/pseudowa"]
)
def test_nothing_to_check_without_a_file(url: str) -> None:
    assert existing_sqlite_file(parse_url(url)) is None


def test_empty_file_is_nothing_to_check(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert existing_sqlite_file(parse_url(f"sqlite:///{empty}")) is None


# -- engines --------------------------------------------------------------------------------


@pytest.mark.parametrize("foreign_keys", [True, False])
def test_sqlite_engine_sets_wal_timeout_and_foreign_keys(
    tmp_path: Path, foreign_keys: bool
) -> None:
    engine = make_engine(parse_url(f"sqlite:///{tmp_path / 's.db'}"), foreign_keys=foreign_keys)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == int(foreign_keys)
    finally:
        engine.dispose()


def test_unpooled_engine_keeps_no_connection(tmp_path: Path) -> None:
    engine = make_engine(parse_url(f"sqlite:///{tmp_path / 's.db'}"), pooled=False)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert engine.pool.status().startswith("NullPool")
    finally:
        engine.dispose()


# -- damaged SQLite files -------------------------------------------------------------------


def _real_store(path: Path) -> None:
    """A store of a few hundred pages, closed cleanly (no -wal or -shm left)."""
    with CassetteStore.open(f"sqlite:///{path}") as store:
        store.create_cassette("c")
        for i in range(40):
            store.put_media(bytes([i]) * 20_000, "image/png")
    assert _siblings(path) == [path.name]


def test_store_with_corrupted_pages_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _real_store(path)
    with path.open("r+b") as fh:
        # Garbage over some pages in the middle; the header and sqlite_master are intact,
        # so without an integrity check the file opens and "upgrades" fine.
        fh.seek(4096 * 6)
        fh.write(bytes(range(256)) * 48)
    damaged = path.read_bytes()

    with pytest.raises(DatabaseUnavailable, match="is damaged") as caught:
        CassetteStore.open(f"sqlite:///{path}")

    assert "\n" not in str(caught.value)
    assert path.read_bytes() == damaged
    assert _siblings(path) == ["store.db"]


def test_truncated_store_is_refused_without_leaving_wal_or_shm(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _real_store(path)
    with path.open("r+b") as fh:
        fh.truncate(8192)

    for upgrade in (True, False):
        with pytest.raises(DatabaseUnavailable, match="store.db"):
            CassetteStore.open(f"sqlite:///{path}", upgrade=upgrade)
        assert _siblings(path) == ["store.db"]


def test_a_refusal_keeps_the_wal_and_shm_that_were_already_there(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _real_store(path)
    with path.open("r+b") as fh:
        fh.truncate(8192)
    (tmp_path / "store.db-wal").write_bytes(b"")
    (tmp_path / "store.db-shm").write_bytes(b"\0" * 32768)

    with pytest.raises(DatabaseUnavailable):
        CassetteStore.open(f"sqlite:///{path}")

    assert _siblings(path) == ["store.db", "store.db-shm", "store.db-wal"]


def test_missing_file_without_create_folder_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.db"
    assert existing_sqlite_file(parse_url(f"sqlite:///{path}"), create_folder=False) is None
    assert not path.parent.exists()


def test_the_integrity_check_can_be_skipped_or_forced(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _real_store(path)
    with path.open("r+b") as fh:
        fh.seek(4096 * 6)
        fh.write(bytes(range(256)) * 48)
    # Forced (what `pseudowa db upgrade` asks for): refused, the folder as it was.
    with pytest.raises(DatabaseUnavailable, match="is damaged"):
        existing_sqlite_file(parse_url(f"sqlite:///{path}"), check_integrity=True)
    assert _siblings(path) == ["store.db"]
    # Skipped (what a large file gets on an ordinary open): the header and the tables
    # read fine, so the damage goes unnoticed here.
    found = existing_sqlite_file(parse_url(f"sqlite:///{path}"), check_integrity=False)
    assert found is not None and "cassette" in found.tables
