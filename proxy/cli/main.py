"""The `pseudowa` command line: one click group, thin shells over the library.

Every user mistake surfaces as one line on stderr and a non-zero exit; the
library raises `StoreError` (or another `UserError`) and `main` turns it into that line.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from pseudowa.proxy.cli.cassette import export_cmd
from pseudowa.proxy.cli.cassette import import_cmd
from pseudowa.proxy.cli.mutate import mutate_group
from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.proxy.cli.replay import replay_cmd
from pseudowa.proxy.contract import hosts
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm import record as record_defaults
from pseudowa.storage import migrate
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import CassetteInfo


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


# -- record --------------------------------------------------------------------------

RECORD_EPILOG = """\b
Pointing Meta and the bot at the recorder (default ports):
  Meta -> bot   In the App Dashboard (WhatsApp > Configuration) set the callback URL
                to a public HTTPS tunnel that reaches the webhook listener, plus the
                bot's path, e.g. `cloudflared tunnel --url http://127.0.0.1:8090`,
                then https://<tunnel>/webhook. The verify handshake passes through.
  bot -> Meta   Set the bot's Graph base URL to http://127.0.0.1:8091 instead of
                https://graph.facebook.com. Media URLs in Graph answers are rewritten
                to the media listener (8092), so downloads are recorded too.
  or            Keep the bot's URLs and run it with HTTPS_PROXY=http://127.0.0.1:8093,
                trusting mitmproxy's CA: SSL_CERT_FILE=~/.mitmproxy/mitmproxy-ca-cert.pem
                (Python requests: REQUESTS_CA_BUNDLE, Node: NODE_EXTRA_CA_CERTS).
Stop with Ctrl-C or SIGTERM: the cassette is flushed and a summary printed.
"""


@cli.command("record", epilog=RECORD_EPILOG)
@click.argument("name")
@db_option
@click.option(
    "--bot-webhook",
    metavar="URL",
    default=None,
    help="The bot's webhook URL, e.g. http://127.0.0.1:8000/webhook. Meta's webhooks "
    "reach it through the webhook listener. Without it, no webhook listener.",
)
@click.option(
    "--host",
    default=record_defaults.DEFAULT_HOST,
    show_default=True,
    help="Address every listener binds to.",
)
@click.option(
    "--webhook-port",
    default=record_defaults.DEFAULT_WEBHOOK_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Webhook listener (reverse proxy to --bot-webhook); 0 picks a free port.",
)
@click.option(
    "--graph-upstream",
    metavar="URL",
    default=hosts.GRAPH_URL,
    show_default=True,
    help="Where Graph API calls go.",
)
@click.option(
    "--graph-port",
    default=record_defaults.DEFAULT_GRAPH_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Graph listener (reverse proxy to --graph-upstream); the bot's Graph base URL.",
)
@click.option(
    "--media-upstream",
    metavar="URL",
    default=hosts.MEDIA_URL,
    show_default=True,
    help="Where media downloads go.",
)
@click.option(
    "--media-port",
    default=record_defaults.DEFAULT_MEDIA_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Media listener (reverse proxy to --media-upstream); media URLs in Graph "
    "answers are rewritten to it.",
)
@click.option(
    "--proxy-port",
    default=record_defaults.DEFAULT_PROXY_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Regular HTTP(S) proxy listener, for a bot using HTTPS_PROXY.",
)
@click.option("--no-proxy", "no_proxy", is_flag=True, help="Do not start the regular proxy.")
@click.option(
    "--mode",
    "record_mode",
    default="new",
    show_default=True,
    type=click.Choice(record_defaults.MODES),
    help="new: the cassette must not exist; append: add to it; overwrite: replace it.",
)
@click.option(
    "--source",
    default="meta",
    show_default=True,
    type=click.Choice(record_defaults.SOURCES),
    help="Who is on the other side: real Meta, or a pseudowa sandbox.",
)
@click.option(
    "--app-secret",
    default="",
    envvar="PSEUDOWA_APP_SECRET",
    show_envvar=True,
    help="The app secret (checks webhook signatures; scrubbed from the cassette).",
)
@click.option(
    "--access-token",
    default="",
    envvar="PSEUDOWA_ACCESS_TOKEN",
    show_envvar=True,
    help="The bot's access token (scrubbed wherever it appears).",
)
@click.option(
    "--verify-token",
    default="",
    envvar="PSEUDOWA_VERIFY_TOKEN",
    show_envvar=True,
    help="The webhook verify token (scrubbed wherever it appears).",
)
@click.option(
    "--pseudonymize",
    is_flag=True,
    help="Replace users' phone numbers, names and wamids with consistent fakes.",
)
@click.option(
    "--confdir",
    metavar="DIR",
    default=None,
    help="mitmproxy's configuration directory, where its CA lives [default: ~/.mitmproxy].",
)
@click.option(
    "--ssl-insecure",
    is_flag=True,
    help="Do not verify upstream TLS certificates (self-signed test servers).",
)
def record_cmd(name: str, db: str | None, no_proxy: bool, record_mode: str, **kw: Any) -> None:
    """Record a session of the bot with Meta into cassette NAME, until Ctrl-C or SIGTERM.

    mitmproxy runs in-process with up to four listeners; every exchange through
    them is written to the cassette with secrets scrubbed, and printed as one line.
    """
    from pseudowa.proxy.mitm.record import RecordOptions
    from pseudowa.proxy.mitm.record import run_record

    url = db or click.get_current_context().find_root().params.get("db")
    options = RecordOptions(
        name=name,
        db=url,
        bot_webhook=kw["bot_webhook"],
        host=kw["host"],
        webhook_port=kw["webhook_port"],
        graph_port=kw["graph_port"],
        media_port=kw["media_port"],
        proxy_port=kw["proxy_port"],
        graph_upstream=kw["graph_upstream"],
        media_upstream=kw["media_upstream"],
        mode=record_mode,
        source=kw["source"],
        app_secret=kw["app_secret"],
        access_token=kw["access_token"],
        verify_token=kw["verify_token"],
        pseudonymize=kw["pseudonymize"],
        regular_proxy=not no_proxy,
        confdir=kw["confdir"],
        ssl_insecure=kw["ssl_insecure"],
    )
    run_record(options, on_line=click.echo)


@cli.command("ca")
@click.option(
    "--confdir",
    metavar="DIR",
    default=None,
    help="mitmproxy's configuration directory [default: ~/.mitmproxy].",
)
def ca_cmd(confdir: str | None) -> None:
    """Print the path of mitmproxy's CA certificate, creating it first if missing.

    Bots using HTTPS_PROXY with `pseudowa record` or `pseudowa replay --proxy-port` must
    trust it, and read it when they start, so make it before starting the bot, e.g.
    `export SSL_CERT_FILE=$(pseudowa ca)`.
    """
    from pseudowa.proxy.mitm.ca import ensure_ca

    click.echo(str(ensure_ca(confdir)))


@cli.command("demo")
@click.option(
    "--sample",
    type=click.Path(path_type=Path),
    default=Path("cassettes/image-round-trip"),
    show_default=True,
    help="Exported image cassette to replay (recorded first if absent).",
)
def demo_cmd(sample: Path) -> None:
    """Replay the image sample to the example bot with a duplicated webhook, and check it."""
    from pseudowa.proxy.examples.demo import main as run_demo

    if not run_demo(click.echo, sample=sample):
        sys.exit(1)


@cli.command("example-bot")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the bot's webhook (http://HOST:PORT/webhook).",
)
@click.option(
    "--graph-url",
    envvar="WA_GRAPH_URL",
    default="https://graph.facebook.com",
    show_default=True,
    show_envvar=True,
    help="The Graph API base URL the bot calls.",
)
@click.option(
    "--access-token",
    envvar="WA_TOKEN",
    required=True,
    show_envvar=True,
    help="The bot's access token.",
)
@click.option(
    "--app-secret",
    envvar="WA_APP_SECRET",
    required=True,
    show_envvar=True,
    help="Checks X-Hub-Signature-256 of incoming webhooks.",
)
@click.option(
    "--verify-token",
    envvar="WA_VERIFY_TOKEN",
    required=True,
    show_envvar=True,
    help="Expected hub.verify_token of the handshake.",
)
@click.option(
    "--phone-number-id",
    envvar="WA_PHONE_NUMBER_ID",
    default="106540352242922",
    show_default=True,
    show_envvar=True,
    help="The number the bot sends from.",
)
def example_bot_cmd(
    host: str,
    port: int,
    graph_url: str,
    access_token: str,
    app_secret: str,
    verify_token: str,
    phone_number_id: str,
) -> None:
    """Run the bundled example bot (echoes text, fetches media, answers buttons) until Ctrl-C.

    Against a sandbox: pseudowa example-bot --graph-url http://127.0.0.1:8080 with the
    sandbox's three secrets, e.g. WA_TOKEN=pseudowa-access-token
    WA_APP_SECRET=pseudowa-app-secret WA_VERIFY_TOKEN=pseudowa-verify-token.
    """
    from aiohttp import web

    from pseudowa.proxy.examples.example_bot import BotConfig
    from pseudowa.proxy.examples.example_bot import make_app

    config = BotConfig(graph_url, access_token, app_secret, verify_token, phone_number_id)
    try:
        web.run_app(make_app(config), host=host, port=port, print=click.echo)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


cli.add_command(replay_cmd)
cassette_group.add_command(mutate_group)
cassette_group.add_command(export_cmd)
cassette_group.add_command(import_cmd)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pseudowa")


if __name__ == "__main__":  # pragma: no cover
    main()
