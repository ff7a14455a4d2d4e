"""From a store URL to a SQLAlchemy engine: parsing, the SQLite file check, pragmas.

Nothing here opens a session or knows the schema: `store.py` opens the store on an
engine made here, and `migrate.py` makes its own SQLite engine here (foreign keys off),
so neither needs the other to connect.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.pool import NullPool

from .errors import DatabaseUnavailable

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# PRAGMA quick_check reads every page: ~0.7 ms per MB warm (0.45 s for a 620 MB store,
# 1.5 s cold), against ~12 ms for the rest of an open. Every open checks files up to
# this size; larger ones when asked (`pseudowa db upgrade` always asks).
QUICK_CHECK_MAX_BYTES = 64 << 20

_PASSWORD_RE = re.compile(r"(://[^:/@]*:).*@")  # greedy: a password may hold "@"


def describe_url(url: URL) -> str:
    """The URL with any password hidden, for messages."""
    return url.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """`url` parsed, PostgreSQL mapped to psycopg; `DatabaseUnavailable` if unusable."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        # ValueError: SQLAlchemy parses the port with int(), so a typo there
        # ("host:54x2") is not an ArgumentError. The URL could not be parsed,
        # so hide its password by hand before echoing it.
        shown = _PASSWORD_RE.sub(r"\1***@", url)
        raise DatabaseUnavailable(
            f"malformed database URL {shown!r}: expected e.g. sqlite:///path/to/store.db "
            "or postgresql://user@host:5432/dbname"
        ) from e
    if parsed.drivername in ("postgresql", "postgres"):
        # One driver for PostgreSQL, the one we install and test.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        # Other backends are untested and their drivers are not installed.
        raise DatabaseUnavailable(
            f"unsupported database {parsed.get_backend_name()!r} in {describe_url(parsed)!r}: "
            "use sqlite:///path/to/store.db or postgresql://user@host:5432/dbname"
        )
    return parsed


@dataclass(frozen=True)
class SqliteFile:
    """An existing SQLite database file and the tables it holds, read without writing."""

    path: Path
    tables: frozenset[str]


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite `url` names; None when not SQLite, in memory or a `file:` URI."""
    database = url.database
    if url.get_backend_name() != "sqlite":
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def existing_sqlite_file(
    url: URL, *, create_folder: bool = True, check_integrity: bool | None = None
) -> SqliteFile | None:
    """The SQLite file `url` names, checked read-only before any engine connects to it.

    None when there is nothing to check: not SQLite, in memory, a `file:` URI, an empty
    file, or no file yet (its folder is then created, unless not `create_folder`).
    Raises `DatabaseUnavailable` for a directory, an unreadable file, a file that is
    not a SQLite database, or one whose pages fail SQLite's quick integrity check (run
    when `check_integrity`, or when None and the file is at most QUICK_CHECK_MAX_BYTES).
    Whether the tables are ours is `migrate.check_tables`'s call.
    """
    path = sqlite_path(url)
    if path is None:
        return None
    if path.is_dir():
        raise DatabaseUnavailable(f"{path} is a directory, not a SQLite database file")
    if not path.exists():
        if create_folder:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DatabaseUnavailable(f"cannot create {path.parent}: {e.strerror}") from e
        return None
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise DatabaseUnavailable(f"cannot read {path}: {e.strerror}") from e
    if not header:
        return None
    if header != SQLITE_MAGIC:
        raise DatabaseUnavailable(f"{path} is not a SQLite database; pseudowa left it untouched")
    if check_integrity is None:
        check_integrity = path.stat().st_size <= QUICK_CHECK_MAX_BYTES
    return SqliteFile(path, frozenset(_checked_tables(path, check_integrity)))


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def _checked_tables(path: Path, check_integrity: bool) -> set[str]:
    # A read-only connection of the standard library, not our engine: its WAL pragma
    # would already rewrite the header of another application's file. Reading a file
    # whose header says WAL still creates -wal and -shm beside it, so a refused file
    # gets those removed again: a refusal leaves the folder as it was.
    before = {p for p in _sidecars(path) if p.exists()}
    try:
        return _read_tables(path, check_integrity)
    except DatabaseUnavailable:
        for created in set(_sidecars(path)) - before:
            created.unlink(missing_ok=True)
        raise


def _read_tables(path: Path, check_integrity: bool) -> set[str]:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            # quick_check reads every page once (no index cross-checks): a damaged store
            # is refused before anything is written into it, not half-way through.
            problems = ["ok"]
            if check_integrity:
                problems = [str(r) for (r,) in conn.execute("PRAGMA quick_check(1)")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise DatabaseUnavailable(f"cannot read {path} as a SQLite database: {e}") from e
    if problems != ["ok"]:
        first = (problems[0].strip().splitlines() or ["no answer"])[0] if problems else "no answer"
        raise DatabaseUnavailable(
            f"{path} is damaged (SQLite integrity check: {first}); pseudowa will not "
            "write into it: restore it from a backup or an export"
        )
    return {name for (name,) in rows}


def _sqlite_pragmas(foreign_keys: bool) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cur.close()

    return on_connect


def make_engine(url: URL, *, foreign_keys: bool = True, pooled: bool = True) -> Engine:
    """An engine with the store's connection settings (SQLite: WAL, FKs, busy timeout)."""
    kwargs: dict[str, Any] = {}
    if not pooled:
        kwargs["poolclass"] = NullPool
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError as e:
        raise DatabaseUnavailable(
            f"unsupported database URL scheme {url.drivername!r}: use sqlite:/// or postgresql://"
        ) from e
    except ArgumentError as e:
        raise DatabaseUnavailable(f"invalid database URL {describe_url(url)!r}: {e}") from e
    if url.get_backend_name() == "sqlite":
        sa_event.listen(engine, "connect", _sqlite_pragmas(foreign_keys))
    return engine
