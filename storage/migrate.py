"""Run the packaged Alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from .engine import make_engine
from .errors import DatabaseUnavailable
from .errors import SchemaError
from .models import Base

# Our own version table, so a database shared with another Alembic-managed
# application keeps its `alembic_version` untouched.
VERSION_TABLE = "pseudowa_alembic_version"
# Any fixed bigint: the PostgreSQL advisory lock migrations of a store take.
MIGRATION_LOCK_KEY = 0x70736575646F7761  # "pseudowa"


def config() -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    location = resources.files("pseudowa.migrations")
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


def head() -> str:
    """The newest revision this version of pseudowa knows."""
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


def known_revisions() -> set[str]:
    """Every revision this version of pseudowa ships, oldest to head."""
    return {script.revision for script in ScriptDirectory.from_config(config()).walk_revisions()}


def check_not_newer(revision: str | None, where: str) -> None:
    """Raise `SchemaError` when `revision` is none this pseudowa ships: a newer one wrote it."""
    if revision is not None and revision not in known_revisions():
        raise SchemaError(
            f"{where} was written by a newer pseudowa (schema {revision}; this one knows "
            f"up to {head()}): upgrade pseudowa to use it"
        )


def current(engine: Engine) -> str | None:
    """The revision the database is at, None for a database never migrated."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def check_ownership(engine: Engine) -> None:
    """Refuse a database that holds another application's tables.

    A PostgreSQL database may be shared with other schemas' tables, but not with
    tables named like ours that Alembic did not create.
    """
    try:
        tables = set(inspect(engine).get_table_names())
    except SQLAlchemyError as e:
        raise DatabaseUnavailable(f"cannot read the schema of {engine.url!r}: {e}") from e
    is_sqlite = engine.url.get_backend_name() == "sqlite"
    where = str(engine.url.database) if is_sqlite else str(engine.url)
    check_tables(tables, where, whole_file=is_sqlite)


def check_tables(tables: set[str], where: str, *, whole_file: bool) -> None:
    """Raise unless `tables` are empty, ours, or (not `whole_file`) free of our names."""
    if not tables or VERSION_TABLE in tables:
        return
    if whole_file or tables & set(Base.metadata.tables):
        listed = ", ".join(sorted(tables)[:5])
        raise DatabaseUnavailable(
            f"{where} holds tables pseudowa did not create ({listed}); "
            "pseudowa will not write into it"
        )


def _lock_for_migration(conn: Connection, is_sqlite: bool) -> None:
    # Two processes opening a fresh store at once would both create the tables and
    # one would fail ("table cassette already exists"). Held to the end of the
    # migration's transaction, the lock makes the second wait, then find the
    # schema at head and do nothing.
    if is_sqlite:
        # pysqlite starts no transaction before DDL on its own; BEGIN IMMEDIATE
        # takes the write lock now (waiting out the busy timeout for the other).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def _run(url: URL, engine: Engine, fn: str, revision: str) -> None:
    # SQLite batch migrations rebuild tables, which fails with foreign keys
    # enforced, so SQLite migrates on its own connection with them off.
    is_sqlite = url.get_backend_name() == "sqlite"
    mig_engine = make_engine(url, foreign_keys=False, pooled=False) if is_sqlite else engine
    cfg = config()
    try:
        with mig_engine.begin() as conn:
            _lock_for_migration(conn, is_sqlite)
            cfg.attributes["connection"] = conn
            getattr(command, fn)(cfg, revision)
    except CommandError as e:
        raise SchemaError(
            f"cannot migrate the store's schema ({e}); the database may have been "
            "written by a newer pseudowa"
        ) from e
    finally:
        if mig_engine is not engine:
            mig_engine.dispose()


def upgrade(url: URL, engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision` (head by default)."""
    _run(url, engine, "upgrade", revision)


def downgrade(url: URL, engine: Engine, revision: str = "base") -> None:
    """Migrate the database down to `revision` (base drops every table)."""
    _run(url, engine, "downgrade", revision)
