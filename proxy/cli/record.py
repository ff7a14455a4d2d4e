"""`pseudowa record NAME`: record a session of the bot with Meta into a cassette.

The recorder itself (mitmproxy, listeners, scrubbing) lives in `pseudowa.proxy.mitm.record`
and is imported inside the command, so `pseudowa --help` does not load mitmproxy.
"""

from __future__ import annotations

from typing import Any

import click

from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.contract import hosts
from pseudowa.proxy.mitm import record as record_defaults

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


@click.command("record", epilog=RECORD_EPILOG)
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
