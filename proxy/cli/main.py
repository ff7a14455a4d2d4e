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

from pseudowa.proxy.mitm import record as record_defaults
from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.proxy.cli.cassette import export_cmd
from pseudowa.proxy.cli.cassette import import_cmd
from pseudowa.proxy.cli.mutate import mutate_group
from pseudowa.storage import migrate
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import CassetteInfo
from pseudowa.storage.store import CassetteStore



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


# -- replay --------------------------------------------------------------------------


def _csv_ints(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as e:
        raise click.BadParameter(f"expected comma-separated error codes, got {value!r}") from e


def _csv_statuses(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in chosen if v not in ("sent", "delivered", "read")]
    if bad:
        raise click.BadParameter(f"unknown status {bad[0]!r}: choose among sent, delivered, read")
    return chosen


REPLAY_EPILOG = """\b
A bot that cannot change its Graph base URL (https://graph.facebook.com):
add --proxy-port 8093 and run the bot with
  HTTPS_PROXY=http://127.0.0.1:8093
  SSL_CERT_FILE=~/.mitmproxy/mitmproxy-ca-cert.pem   (Python's ssl, aiohttp)
  REQUESTS_CA_BUNDLE=<the same file>                 (Python requests)
  NODE_EXTRA_CA_CERTS=<the same file>                (Node)
Requests for graph.facebook.com and lookaside.fbsbx.com (and --redirect-host)
then reach the fake Graph API; media URLs are handed out as
https://lookaside.fbsbx.com/... so downloads take the proxy too. Other hosts
pass through. The CA is mitmproxy's, in --confdir: bots read it when they start,
so create it first with `pseudowa ca [--confdir DIR]` (it prints the path). The
exact lines to use are printed on stderr at start. aiohttp honours HTTPS_PROXY
only with ClientSession(trust_env=True).
"""


@cli.command("replay", epilog=REPLAY_EPILOG)
@click.argument("name")
@click.option("--bot", "bot_url", required=True, metavar="URL",
              help="The bot's webhook URL, e.g. http://127.0.0.1:8000/webhook.")
@db_option
@click.option("--check", "check_", is_flag=True,
              help="Exit 1 when the bot's sends differ from the recording or dedupe fails.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--graph-host", default="127.0.0.1", show_default=True, help="Fake Graph API address.")
@click.option("--graph-port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Fake Graph API port (point the bot's Graph base URL here).")
@click.option("--access-token", default="pseudowa-access-token", show_default=True,
              envvar="PSEUDOWA_ACCESS_TOKEN", help="Bearer token the bot must send.")
@click.option("--app-secret", default="pseudowa-app-secret", show_default=True,
              envvar="PSEUDOWA_APP_SECRET", help="Key of X-Hub-Signature-256.")
@click.option("--verify-token", default="pseudowa-verify-token", show_default=True,
              envvar="PSEUDOWA_VERIFY_TOKEN", help="hub.verify_token of the handshake.")
@click.option("--skip-verify", is_flag=True, help="Do not perform the verify handshake first.")
@click.option("--no-sign", is_flag=True, help="Send webhooks without X-Hub-Signature-256.")
@click.option("--bad-signature", is_flag=True, help="Send webhooks with a wrong signature.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Scale recorded timing (2 = twice as fast, 0 = no waiting).")
@click.option("--duplicate", default=0.0, type=click.FloatRange(0, 1), metavar="P",
              help="Probability each webhook is delivered twice (identical copies).")
@click.option("--reorder", default=0, type=click.IntRange(min=0), metavar="N",
              help="Shuffle deliveries within windows of N.")
@click.option("--batch", default=1, type=click.IntRange(1, 1000), metavar="N",
              help="Merge up to N webhooks into one POST.")
@click.option("--concurrency", default=1, type=click.IntRange(min=1), metavar="N",
              help="Webhooks in flight at once (1 keeps the recorded order).")
@click.option("--retry-time-scale", default=1.0, type=click.FloatRange(min=0, min_open=True),
              metavar="F", help="Compress Meta's 7-day retry schedule (0.0001: about a minute).")
@click.option("--timeout", "timeout_s", default=10.0, type=click.FloatRange(min=0, min_open=True),
              metavar="S", help="A bot slower than this fails the attempt.")
@click.option("--statuses", default="sent,delivered,read", show_default=True,
              callback=_csv_statuses, help="Status webhooks to emit for the bot's sends.")
@click.option("--fail-status-rate", default=0.0, type=click.FloatRange(0, 1), metavar="P",
              help="Fraction of the bot's sends reported as failed.")
@click.option("--fail-status-code", default=131026, show_default=True, type=int,
              help="Error code of failed statuses (131047: outside the 24 h window).")
@click.option("--strict", is_flag=True, help="A send with no recorded answer is an error.")
@click.option("--fail-rate", default=0.0, type=click.FloatRange(0, 1), metavar="P",
              help="Fraction of sends answered with an injected Graph error.")
@click.option("--fail-codes", default="131000", show_default=True, callback=_csv_ints,
              help="Injected error codes, e.g. 131000,130429,190.")
@click.option("--latency", "latency_ms", default=0.0, type=click.FloatRange(min=0), metavar="MS",
              help="Delay every Graph answer.")
@click.option("--jitter", "jitter_ms", default=0.0, type=click.FloatRange(min=0), metavar="MS",
              help="Random extra delay, up to this much.")
@click.option("--media-ttl", default=300.0, show_default=True, type=click.FloatRange(min=0),
              metavar="S", help="Lifetime of media URLs (0: expired at once).")
@click.option("--quiet", "quiet_s", default=1.0, show_default=True,
              type=click.FloatRange(min=0), metavar="S",
              help="The bot is done when nothing happened for this long.")
@click.option("--seed", default=None, type=int, help="Seed for duplicates, reordering and faults.")
@click.option("--ignore", multiple=True, metavar="FIELD",
              help="Also ignore this send field in the check (dotted path, * wildcards).")
@click.option("--journal", "journal_name", default=None, metavar="NAME",
              help="Name of the run's journal cassette (default NAME.run-<time>).")
@click.option("--no-journal", is_flag=True, help="Do not keep the run's journal in the store.")
@click.option("--proxy-port", default=None, type=click.IntRange(0, 65535), metavar="PORT",
              help="Also run an HTTP(S) proxy here (on --graph-host) that sends Meta's hosts to "
                   "the fake Graph API, for a bot using HTTPS_PROXY (0 picks a free port).")
@click.option("--confdir", metavar="DIR", default=None,
              help="With --proxy-port: mitmproxy's configuration directory, where its CA lives "
                   "[default: ~/.mitmproxy].")
@click.option("--redirect-host", "redirect_hosts", multiple=True, metavar="HOST",
              help="With --proxy-port: also send this host to the fake Graph API (repeatable).")
def replay_cmd(name: str, bot_url: str, db: str | None, check_: bool, as_json: bool,
               **kw: Any) -> None:
    """Replay cassette NAME against the bot at --bot, then compare its sends with the recording.

    NAME may also be an exported cassette directory (holding cassette.json): it is imported
    into a throwaway store and replayed from there, without a journal (--db is not used).
    """
    from pseudowa.proxy.cli.cassette import is_export_dir
    from pseudowa.proxy.cli.cassette import temporary_import

    progress = not as_json and sys.stderr.isatty()
    if is_export_dir(name) or "/" in name:  # cassette names never hold a "/"
        if kw["journal_name"]:
            raise UserError("--journal needs a cassette in the store: import the directory "
                            "first with `pseudowa cassette import`, then replay it by name")
        kw["no_journal"] = True  # the throwaway store is deleted after the run
        with temporary_import(Path(name)) as (store, imported):
            report = _run_replay(store, imported, bot_url, kw, progress=progress)
    else:
        with open_store(db) as store:
            report = _run_replay(store, name, bot_url, kw, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.render():
            click.echo(line)
    if check_ and not report.ok:
        sys.exit(1)


@cli.command("record", epilog=RECORD_EPILOG)
@click.argument("name")
@db_option
@click.option("--bot-webhook", metavar="URL", default=None,
              help="The bot's webhook URL, e.g. http://127.0.0.1:8000/webhook. Meta's webhooks "
                   "reach it through the webhook listener. Without it, no webhook listener.")
@click.option("--host", default=record_defaults.DEFAULT_HOST, show_default=True,
              help="Address every listener binds to.")
@click.option("--webhook-port", default=record_defaults.DEFAULT_WEBHOOK_PORT, show_default=True,
              type=click.IntRange(0, 65535),
              help="Webhook listener (reverse proxy to --bot-webhook); 0 picks a free port.")
@click.option("--graph-upstream", metavar="URL", default=record_defaults.GRAPH_URL,
              show_default=True, help="Where Graph API calls go.")
@click.option("--graph-port", default=record_defaults.DEFAULT_GRAPH_PORT, show_default=True,
              type=click.IntRange(0, 65535),
              help="Graph listener (reverse proxy to --graph-upstream); the bot's Graph base URL.")
@click.option("--media-upstream", metavar="URL", default=record_defaults.MEDIA_URL,
              show_default=True, help="Where media downloads go.")
@click.option("--media-port", default=record_defaults.DEFAULT_MEDIA_PORT, show_default=True,
              type=click.IntRange(0, 65535),
              help="Media listener (reverse proxy to --media-upstream); media URLs in Graph "
                   "answers are rewritten to it.")
@click.option("--proxy-port", default=record_defaults.DEFAULT_PROXY_PORT, show_default=True,
              type=click.IntRange(0, 65535),
              help="Regular HTTP(S) proxy listener, for a bot using HTTPS_PROXY.")
@click.option("--no-proxy", "no_proxy", is_flag=True, help="Do not start the regular proxy.")
@click.option("--mode", "record_mode", default="new", show_default=True,
              type=click.Choice(record_defaults.MODES),
              help="new: the cassette must not exist; append: add to it; overwrite: replace it.")
@click.option("--source", default="meta", show_default=True,
              type=click.Choice(record_defaults.SOURCES),
              help="Who is on the other side: real Meta, or a pseudowa sandbox.")
@click.option("--app-secret", default="", envvar="PSEUDOWA_APP_SECRET", show_envvar=True,
              help="The app secret (checks webhook signatures; scrubbed from the cassette).")
@click.option("--access-token", default="", envvar="PSEUDOWA_ACCESS_TOKEN", show_envvar=True,
              help="The bot's access token (scrubbed wherever it appears).")
@click.option("--verify-token", default="", envvar="PSEUDOWA_VERIFY_TOKEN", show_envvar=True,
              help="The webhook verify token (scrubbed wherever it appears).")
@click.option("--pseudonymize", is_flag=True,
              help="Replace users' phone numbers, names and wamids with consistent fakes.")
@click.option("--confdir", metavar="DIR", default=None,
              help="mitmproxy's configuration directory, where its CA lives [default: ~/.mitmproxy].")
@click.option("--ssl-insecure", is_flag=True,
              help="Do not verify upstream TLS certificates (self-signed test servers).")
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
@click.option("--confdir", metavar="DIR", default=None,
              help="mitmproxy's configuration directory [default: ~/.mitmproxy].")
def ca_cmd(confdir: str | None) -> None:
    """Print the path of mitmproxy's CA certificate, creating it first if missing.

    Bots using HTTPS_PROXY with `pseudowa record` or `pseudowa replay --proxy-port` must
    trust it, and read it when they start, so make it before starting the bot, e.g.
    `export SSL_CERT_FILE=$(pseudowa ca)`.
    """
    from pseudowa.proxy.mitm.runner import ensure_ca

    click.echo(str(ensure_ca(confdir)))


@cli.command("demo")
@click.option("--sample", type=click.Path(path_type=Path), default=Path("cassettes/image-round-trip"),
              show_default=True, help="Exported image cassette to replay (recorded first if absent).")
def demo_cmd(sample: Path) -> None:
    """Replay the image sample to the example bot with a duplicated webhook, and check it."""
    from pseudowa.proxy.examples.demo import main as run_demo

    if not run_demo(click.echo, sample=sample):
        sys.exit(1)


def _run_replay(
    store: CassetteStore, name: str, bot_url: str, kw: dict[str, Any], progress: bool
) -> Any:
    # Imported here so `pseudowa cassette ls` does not pay for aiohttp.
    import asyncio

    from pseudowa.proxy.contract.matching import DEFAULT_VOLATILE
    from pseudowa.proxy.sandbox.emitter import Attempt
    from pseudowa.proxy.sandbox.emitter import EmitterConfig
    from pseudowa.proxy.sandbox.emitter import Outcome
    from pseudowa.proxy.sandbox.emitter import RetryPolicy
    from pseudowa.proxy.sandbox.graph import GraphConfig
    from pseudowa.proxy.sandbox.replay import Replay
    from pseudowa.proxy.sandbox.replay import ReplayOptions

    if kw["no_sign"] and kw["bad_signature"]:
        raise UserError("--no-sign and --bad-signature exclude each other")
    if kw["proxy_port"] is None:
        for option, given in (("--confdir", kw["confdir"]), ("--redirect-host", kw["redirect_hosts"])):
            if given:
                raise UserError(f"{option} only applies with --proxy-port")
    store.get_cassette(name)  # an unknown name fails here, before any port is opened
    options = ReplayOptions(
        emitter=EmitterConfig(
            bot_url=bot_url,
            app_secret=kw["app_secret"],
            verify_token=kw["verify_token"],
            skip_verify=kw["skip_verify"],
            signing="none" if kw["no_sign"] else "bad" if kw["bad_signature"] else "valid",
            speed=kw["speed"],
            duplicate=kw["duplicate"],
            reorder=kw["reorder"],
            batch=kw["batch"],
            retry=RetryPolicy(time_scale=kw["retry_time_scale"]),
            timeout_s=kw["timeout_s"],
            concurrency=kw["concurrency"],
            seed=kw["seed"],
        ),
        graph=GraphConfig(
            access_token=kw["access_token"],
            media_ttl_s=kw["media_ttl"],
            strict=kw["strict"],
            fail_rate=kw["fail_rate"],
            fail_codes=kw["fail_codes"] or (131000,),
            latency_ms=kw["latency_ms"],
            jitter_ms=kw["jitter_ms"],
            seed=kw["seed"],
            volatile=(*DEFAULT_VOLATILE, *kw["ignore"]),
        ),
        graph_host=kw["graph_host"],
        graph_port=kw["graph_port"],
        statuses=kw["statuses"],
        fail_status_rate=kw["fail_status_rate"],
        fail_status_code=kw["fail_status_code"],
        quiet_s=kw["quiet_s"],
        journal=not kw["no_journal"],
        journal_name=kw["journal_name"],
        proxy_port=kw["proxy_port"],
        confdir=kw["confdir"],
        redirect_hosts=tuple(kw["redirect_hosts"]),
    )

    def show(attempt: Attempt, outcome: Outcome) -> None:
        result = attempt.status if attempt.status is not None else attempt.error
        copy = f" (copy {attempt.copy})" if attempt.copy else ""
        retry = f" retry {attempt.attempt}" if attempt.attempt else ""
        click.echo(f"  -> {outcome.label}{copy}{retry}: {result}", err=True)

    def note(line: str) -> None:  # the proxy's banner and mitmproxy's warnings
        click.echo(line, err=True)

    replay = Replay(store, name, options, on_attempt=show if progress else None, on_line=note)
    try:
        return asyncio.run(replay.run())
    except VerifyFailed as e:
        raise UserError(f"{e} (use --skip-verify to bypass)") from e
    except OSError as e:
        where = f"{options.graph_host}:{options.graph_port}"
        raise UserError(f"cannot listen on {where} or reach the bot: {e.strerror or e}") from e


cassette_group.add_command(mutate_group)
cassette_group.add_command(export_cmd)
cassette_group.add_command(import_cmd)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pseudowa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
