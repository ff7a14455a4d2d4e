"""`pseudowa cassette ls|show|rm|cp|export|import`: list, inspect, copy and delete
cassettes, and move them in and out of the store as reviewable files.

The export format, the export and the import live in `pseudowa.storage.export`; this module
adds the WhatsApp part the storage layer cannot know (indexing webhook bodies into events on
import, the same indexing the recorder does) and the click commands. `cassette mutate` lives
in `mutate.py`; `main.py` adds it to this group.

This module must not import `pseudowa.proxy.cli.main` at load time: main.py imports it
to register the group (and runs as `python -m pseudowa.proxy.cli.main`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from pseudowa.proxy.cassette.tape import index_exchange
from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.proxy.errors import UserError
from pseudowa.storage.errors import CassetteExists
from pseudowa.storage.export import export_cassette
from pseudowa.storage.export import import_document
from pseudowa.storage.export import read_export
from pseudowa.storage.records import CassetteInfo


@click.group("cassette")
def cassette_group() -> None:
    """List, inspect, copy and delete cassettes."""


def _when(dt: datetime) -> str:
    """A stored time as the reader's local wall-clock time, to the second."""
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _info_dict(info: CassetteInfo) -> dict[str, Any]:
    """A cassette's metadata as `ls --json` and `show --json` print it."""
    return {
        "name": info.name,
        "created_at": info.created_at.isoformat(),
        "source": info.source,
        "notes": info.notes,
        "graph_api_version": info.graph_api_version,
        "phone_number_ids": list(info.phone_number_ids),
        "interactions": info.interaction_count,
        "events": info.event_count,
        "media": info.media_count,
    }


@cassette_group.command("ls")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def cassette_ls(db: str | None, as_json: bool) -> None:
    """List the cassettes in the store."""
    with open_store(db, upgrade=False) as store:
        infos = store.list_cassettes()
    if as_json:
        click.echo(json.dumps([_info_dict(i) for i in infos], indent=2))
        return
    if not infos:
        click.echo("no cassettes")
        return
    width = max(len("NAME"), *(len(i.name) for i in infos))
    click.echo(f"{'NAME':<{width}}  {'SOURCE':<8}  {'CREATED':<19}  EXCH  EVENTS  MEDIA")
    for i in infos:
        click.echo(
            f"{i.name:<{width}}  {i.source:<8}  {_when(i.created_at)}  "
            f"{i.interaction_count:>4}  {i.event_count:>6}  {i.media_count:>5}"
        )


@cassette_group.command("show")
@click.argument("name")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def cassette_show(name: str, db: str | None, as_json: bool) -> None:
    """Show a cassette: metadata, exchanges in order, events, media and history."""
    with open_store(db, upgrade=False) as store:
        info = store.get_cassette(name)
        exchanges = list(store.interactions(name))
        events = store.events(name)
        media = store.list_media(name)
        history = store.history(name)
    t0 = exchanges[0].started_at if exchanges else 0.0
    if as_json:
        doc = _info_dict(info)
        doc["exchanges"] = [
            {
                "seq": x.seq,
                "kind": x.kind,
                "method": x.method,
                "url": x.url,
                "status": x.response_status,
                "error": x.error,
                "offset_s": round(x.started_at - t0, 6),
                "duration_s": round(x.duration, 6),
                "request_bytes": len(x.request_body),
                "response_bytes": len(x.response_body),
            }
            for x in exchanges
        ]
        doc["events"] = [
            {
                "index": i,
                "exchange": e.interaction_seq,
                "category": e.category,
                "type": e.type,
                "wamid": e.wamid,
                "from": e.sender,
                "recipient": e.recipient,
                "media_id": e.media_id,
            }
            for i, e in enumerate(events)
        ]
        doc["media_links"] = [
            {"media_id": x.media_id, "sha256": x.sha256, "mime_type": x.mime_type, "size": x.size}
            for x in media
        ]
        doc["history"] = [
            {"at": h.at.isoformat(), "operation": h.operation, "arguments": h.arguments}
            for h in history
        ]
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"cassette {info.name}")
    click.echo(f"  source      {info.source}")
    click.echo(f"  created     {_when(info.created_at)}")
    if info.graph_api_version:
        click.echo(f"  graph API   {info.graph_api_version}")
    if info.phone_number_ids:
        click.echo(f"  phone ids   {', '.join(info.phone_number_ids)}")
    if info.notes:
        click.echo(f"  notes       {info.notes}")
    click.echo(f"exchanges ({len(exchanges)})")
    for x in exchanges:
        outcome = str(x.response_status) if x.response_status is not None else f"error: {x.error}"
        click.echo(
            f"  #{x.seq:<4} +{x.started_at - t0:8.3f}s  {x.kind:<7}  {x.method:<6} {x.url}  "
            f"-> {outcome} ({x.duration * 1000:.0f} ms)"
        )
    click.echo(f"events ({len(events)})")
    for i, e in enumerate(events):
        who = f" from {e.sender}" if e.sender else f" to {e.recipient}" if e.recipient else ""
        media_note = f" media {e.media_id}" if e.media_id else ""
        # `#i` is the EVENT `cassette mutate` takes (an index into this list, which is
        # the tape's); the exchange that delivered it is named apart, never as `#`.
        click.echo(
            f"  #{i:<4} {e.category:<7} {e.type or '-':<12} {e.wamid or '-'}"
            f"{who}{media_note}  (in exchange {e.interaction_seq})"
        )
    click.echo(f"media ({len(media)})")
    for link in media:
        click.echo(f"  {link.media_id}  {link.mime_type}  {link.size} B  sha256 {link.sha256}")
    if history:
        click.echo(f"history ({len(history)})")
        for h in history:
            args = json.dumps(h.arguments, sort_keys=True, default=str)
            click.echo(f"  {_when(h.at)}  {h.operation}  {args}")


@cassette_group.command("rm")
@click.argument("name")
@db_option
def cassette_rm(name: str, db: str | None) -> None:
    """Delete a cassette and everything it owns (media still used elsewhere is kept)."""
    with open_store(db) as store:
        store.delete_cassette(name)
    click.echo(f"deleted {name}")


@cassette_group.command("cp")
@click.argument("src")
@click.argument("dst")
@db_option
def cassette_cp(src: str, dst: str, db: str | None) -> None:
    """Copy cassette SRC to a new cassette DST (media bytes are shared, not duplicated)."""
    with open_store(db) as store:
        info = store.copy_cassette(src, dst)
    click.echo(f"copied {src} -> {dst} ({info.interaction_count} exchanges)")


def _size(directory: Path) -> int:
    """Total bytes of the files under `directory`, for the export summary line."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@cassette_group.command("export")
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


@cassette_group.command("import")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Name in the store (default: the exported name).")
@click.option("--replace", is_flag=True, help="Replace a cassette of that name.")
@db_option
def import_cmd(directory: Path, name: str | None, replace: bool, db: str | None) -> None:
    """Import the exported cassette in DIR (checked first; the store is untouched on error).

    Media files are checked against their sha256 names; webhook bodies are indexed into
    events again.
    """
    # Checked before the store is opened: opening creates a missing store file, and a
    # mistyped directory must leave nothing behind.
    doc = read_export(directory)
    with open_store(db) as store:
        try:
            info = import_document(
                store, doc, directory, name, replace=replace, index_events=index_exchange
            )
        except CassetteExists as e:
            raise UserError(
                f"{e}; use --replace to overwrite it or --name to choose another name"
            ) from e
    click.echo(
        f"imported {directory} as {info.name}: {info.interaction_count} exchanges, "
        f"{info.event_count} events, {info.media_count} media"
    )
