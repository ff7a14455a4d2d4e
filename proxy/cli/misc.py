"""`pseudowa ca`, `pseudowa demo` and `pseudowa example-bot`: the small helpers around
recording and replaying.

Each imports what it runs (mitmproxy, aiohttp, the demo) inside the command, so
`pseudowa --help` stays cheap.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pseudowa.proxy.errors import UserError


@click.command("ca")
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


@click.command("demo")
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


@click.command("example-bot")
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
