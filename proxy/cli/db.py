"""`pseudowa db upgrade|current`: the cassette store's schema."""

from __future__ import annotations

import click

from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.storage import migrate


@click.group("db")
def db_group() -> None:
    """Manage the cassette store's schema."""


@db_group.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Create the store or migrate it to this pseudowa's schema (opening does the same)."""
    with open_store(db) as store:
        click.echo(f"{store.url}: schema at {store.schema_revision()} (head)")


@db_group.command("current")
@db_option
def db_current(db: str | None) -> None:
    """Print the store's schema revision and whether it is up to date, without migrating."""
    with open_store(db, upgrade=False) as store:
        rev = store.schema_revision()
        head = migrate.head()
        state = "up to date" if rev == head else f"behind head {head}" if rev else "empty"
        click.echo(f"{store.url}: {rev or 'no schema'} ({state})")
