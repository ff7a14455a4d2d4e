"""`pseudowa db upgrade|current|gc`: the cassette store's schema and its unlinked media."""

from __future__ import annotations

from datetime import timedelta

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
    """Create the store or migrate it to this pseudowa's schema, checking a SQLite file's
    pages first, however large (opening checks small files and migrates too)."""
    with open_store(db, check_integrity=True) as store:
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


def _amount(count: int, size: int) -> str:
    blobs = "blob" if count == 1 else "blobs"
    return f"{count} unreferenced media {blobs} ({size:,} bytes)"


@db_group.command("gc")
@db_option
@click.option("--yes", is_flag=True, help="Delete them; without it, only say what would go.")
@click.option(
    "--min-age",
    type=click.IntRange(min=0),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="Spare blobs stored more recently: an import or recording in progress stores "
    "media before it links them.",
)
def db_gc(db: str | None, yes: bool, min_age: int) -> None:
    """Remove media blobs no cassette links (a dry run unless --yes)."""
    # The dry run only reads: it neither creates nor migrates the store.
    with open_store(db, upgrade=yes) as store:
        found = store.collect_garbage(dry_run=not yes, min_age=timedelta(seconds=min_age))
    if not found.count:
        click.echo(f"{store.url}: no unreferenced media blobs, nothing to free")
    elif yes:
        click.echo(f"{store.url}: freed {_amount(found.count, found.size)}")
    else:
        click.echo(
            f"{store.url}: would free {_amount(found.count, found.size)}; "
            "run with --yes to delete them"
        )
