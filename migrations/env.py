"""Alembic environment for pseudowa's store.

The store runs migrations in-process and hands its connection over through
`config.attributes["connection"]`; the developer CLI (`alembic -c
migrations/alembic.ini ...`) gets an engine from the configured URL instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy import create_engine

from pseudowa.storage.models import Base

config = context.config

target_metadata = Base.metadata
VERSION_TABLE = config.get_main_option("version_table") or "pseudowa_alembic_version"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
