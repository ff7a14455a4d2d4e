"""`pseudowa cassette export` and `pseudowa cassette import`: cassettes as reviewable files.

The format, the export and the import live in `pseudowa.storage.export`; this module
adds the WhatsApp part the storage layer cannot know (indexing webhook bodies into
events on import, the same indexing the recorder does) and the click commands.

This module must not import `pseudowa.proxy.cli.main` at load time: main.py imports it
to register the commands (and runs as `python -m pseudowa.proxy.cli.main`).
"""

from __future__ import annotations

from pathlib import Path

import click

from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.errors import UserError
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.export import export_cassette
from pseudowa.storage.export import import_cassette

from .options import db_option
from .options import open_store


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@click.command("export")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    "directory",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Directory to write (new, empty, or an earlier export, which is replaced).",
)
@db_option
def export_cmd(name: str, directory: Path, db: str | None) -> None:
    """Export cassette NAME to DIR: cassette.json (reviewable JSON) and media/ files.

    Webhook bodies keep their exact bytes; events are not written (import re-indexes
    them). Exporting again, or after an import, gives byte-identical files.
    """
    with open_store(db) as store:
        export_cassette(store, name, directory)
        info = store.get_cassette(name)
    click.echo(
        f"exported {name} to {directory}: {info.interaction_count} exchanges, "
        f"{info.media_count} media, {_size(directory)} bytes"
    )


@click.command("import")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Name in the store (default: the exported name).")
@click.option("--replace", is_flag=True, help="Replace a cassette of that name.")
@db_option
def import_cmd(directory: Path, name: str | None, replace: bool, db: str | None) -> None:
    """Import the exported cassette in DIR (checked first; the store is untouched on error).

    Media files are checked against their sha256 names; webhook bodies are indexed into
    events again.
    """
    with open_store(db) as store:
        try:
            info = import_cassette(
                store, directory, name, replace=replace, index_events=index_exchange
            )
        except CassetteExists as e:
            raise UserError(
                f"{e}; use --replace to overwrite it or --name to choose another name"
            ) from e
    click.echo(
        f"imported {directory} as {info.name}: {info.interaction_count} exchanges, "
        f"{info.event_count} events, {info.media_count} media"
    )
