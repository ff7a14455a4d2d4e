"""The `pseudowa` command line: one click group, thin shells over the library.

Every user mistake surfaces as one line on stderr and a non-zero exit; the
library raises `StoreError` (or another `UserError`) and `main` turns it into that line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from typing import TypeVar

import click

from pseudowa.storage import migrate
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import CassetteInfo
from pseudowa.storage.store import DEFAULT_URL
from pseudowa.storage.store import ENV_VAR
from pseudowa.storage.store import CassetteStore

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 1."""


def db_option(fn: F) -> F:
    """`--db URL` on any command that opens the store (also `$PSEUDOWA_DB`)."""
    return click.option(
        "--db",
        "db",
        metavar="URL",
        default=None,
        help=f"Store URL (SQLAlchemy form). Default: ${ENV_VAR}, else {DEFAULT_URL}.",
    )(fn)


def open_store(db: str | None, *, upgrade: bool = True) -> CassetteStore:
    """The store named by `--db` here, or on the group, or in the environment."""
    url = db or click.get_current_context().find_root().params.get("db")
    return CassetteStore.open(url, upgrade=upgrade)


class _Group(click.Group):
    """Turns library errors meant for the user into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (StoreError, UserError) as e:
            raise click.ClickException(str(e)) from e


@click.group("pseudowa", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pseudowa", prog_name="pseudowa")
@db_option
def cli(db: str | None) -> None:
    """pseudowa: record a WhatsApp Cloud API bot's traffic once, replay it offline in CI."""


# -- db ------------------------------------------------------------------------------


@cli.group("db")
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


# -- cassette ------------------------------------------------------------------------


@cli.group("cassette")
def cassette_group() -> None:
    """List, inspect, copy and delete cassettes."""


def _when(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _info_dict(info: CassetteInfo) -> dict[str, Any]:
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
    with open_store(db) as store:
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
    with open_store(db) as store:
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
                "exchange": e.interaction_seq,
                "category": e.category,
                "type": e.type,
                "wamid": e.wamid,
                "from": e.sender,
                "recipient": e.recipient,
                "media_id": e.media_id,
            }
            for e in events
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
    for e in events:
        who = f"from {e.sender}" if e.sender else f"to {e.recipient}" if e.recipient else ""
        media_note = f" media {e.media_id}" if e.media_id else ""
        click.echo(
            f"  #{e.interaction_seq:<4} {e.category:<7} {e.type or '-':<12} {e.wamid or '-'} "
            f"{who}{media_note}".rstrip()
        )
    click.echo(f"media ({len(media)})")
    for x in media:
        click.echo(f"  {x.media_id}  {x.mime_type}  {x.size} B  sha256 {x.sha256}")
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


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pseudowa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
