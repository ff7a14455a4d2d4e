"""`pseudowa replay`: one replay run of a cassette against a bot, in a sandbox of its own.

Every option is a `SandboxConfig` field of the same name (`--access-token` is
`access_token`); the older spellings (`--bot`, `--timeout`, `--latency`, `--jitter`,
`--quiet`, `--journal`) stay as aliases.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import Any

import click

from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.options import open_store
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import ListenError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.errors import VerifyFailed
from pseudowa.proxy.sandbox.config import DEFAULT_GRAPH_PORT
from pseudowa.proxy.sandbox.config import SandboxConfig

_DEFAULTS = SandboxConfig()


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


@click.command("replay", epilog=REPLAY_EPILOG)
@click.argument("name")
@click.option(
    "--bot-url",
    "--bot",
    "bot_url",
    required=True,
    metavar="URL",
    help="The bot's webhook URL, e.g. http://127.0.0.1:8000/webhook.",
)
@db_option
@click.option(
    "--check",
    "check_",
    is_flag=True,
    help="Exit 1 when the bot's sends differ from the recording or dedupe fails.",
)
@click.option(
    "--update",
    is_flag=True,
    help="With --check: when the bot's sends differ, accept this run's sends as the "
    "recording (snapshot update, logged in the cassette's history) and exit 0.",
)
@click.option(
    "--tolerate-retries",
    is_flag=True,
    help="Pass a webhook the bot answered 200 only on Meta's retry (fails by default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option(
    "--graph-host", default=_DEFAULTS.graph_host, show_default=True, help="Fake Graph API address."
)
@click.option(
    "--graph-port",
    default=DEFAULT_GRAPH_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Fake Graph API port (point the bot's Graph base URL here; 0 picks one).",
)
@click.option(
    "--access-token",
    default=_DEFAULTS.access_token,
    show_default=True,
    envvar="PSEUDOWA_ACCESS_TOKEN",
    help="Bearer token the bot must send.",
)
@click.option(
    "--app-secret",
    default=_DEFAULTS.app_secret,
    show_default=True,
    envvar="PSEUDOWA_APP_SECRET",
    help="Key of X-Hub-Signature-256.",
)
@click.option(
    "--verify-token",
    default=_DEFAULTS.verify_token,
    show_default=True,
    envvar="PSEUDOWA_VERIFY_TOKEN",
    help="hub.verify_token of the handshake.",
)
@click.option(
    "--phone-number-id",
    default=_DEFAULTS.phone_number_id,
    show_default=True,
    help="The business phone number id synthesized webhooks come from.",
)
@click.option("--skip-verify", is_flag=True, help="Do not perform the verify handshake first.")
@click.option(
    "--signing",
    default=None,
    type=click.Choice(["valid", "none", "bad"]),
    help="valid: sign as Meta does (default); none: no signature; bad: a wrong one.",
)
@click.option("--no-sign", is_flag=True, help="Same as --signing none.")
@click.option("--bad-signature", is_flag=True, help="Same as --signing bad.")
@click.option(
    "--speed",
    default=_DEFAULTS.speed,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Scale recorded timing (2 = twice as fast, 0 = no waiting).",
)
@click.option(
    "--duplicate",
    default=_DEFAULTS.duplicate,
    type=click.FloatRange(0, 1),
    metavar="P",
    help="Probability each webhook is delivered twice (identical copies).",
)
@click.option(
    "--reorder",
    default=_DEFAULTS.reorder,
    type=click.IntRange(min=0),
    metavar="N",
    help="Shuffle deliveries within windows of N.",
)
@click.option(
    "--batch",
    default=_DEFAULTS.batch,
    type=click.IntRange(1, 1000),
    metavar="N",
    help="Merge up to N webhooks into one POST.",
)
@click.option(
    "--concurrency",
    default=_DEFAULTS.concurrency,
    type=click.IntRange(min=1),
    metavar="N",
    help="Webhooks in flight at once (1 keeps the recorded order).",
)
@click.option(
    "--retry-time-scale",
    default=_DEFAULTS.retry_time_scale,
    type=click.FloatRange(min=0, min_open=True),
    metavar="F",
    help="Compress Meta's 7-day retry schedule (default: follow --speed; at --speed 0 the "
    "7 days pass in about 3 s; 1: Meta's timing; 0.0001: about a minute).",
)
@click.option(
    "--timeout-s",
    "--timeout",
    "timeout_s",
    default=_DEFAULTS.timeout_s,
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="A bot slower than this fails the attempt.",
)
@click.option(
    "--statuses",
    default=",".join(_DEFAULTS.statuses),
    show_default=True,
    callback=_csv_statuses,
    help="Status webhooks to emit for the bot's sends.",
)
@click.option(
    "--fail-status-rate",
    default=_DEFAULTS.fail_status_rate,
    type=click.FloatRange(0, 1),
    metavar="P",
    help="Fraction of the bot's sends reported as failed.",
)
@click.option(
    "--fail-status-code",
    default=_DEFAULTS.fail_status_code,
    show_default=True,
    type=int,
    help="Error code of failed statuses (131047: outside the 24 h window).",
)
@click.option("--strict", is_flag=True, help="A send with no recorded answer is an error.")
@click.option(
    "--fail-rate",
    default=_DEFAULTS.fail_rate,
    type=click.FloatRange(0, 1),
    metavar="P",
    help="Fraction of sends answered with an injected Graph error.",
)
@click.option(
    "--fail-codes",
    default=",".join(map(str, _DEFAULTS.fail_codes)),
    show_default=True,
    callback=_csv_ints,
    help="Injected error codes, e.g. 131000,130429,190.",
)
@click.option(
    "--latency-ms",
    "--latency",
    "latency_ms",
    default=_DEFAULTS.latency_ms,
    type=click.FloatRange(min=0),
    metavar="MS",
    help="Delay every Graph answer.",
)
@click.option(
    "--jitter-ms",
    "--jitter",
    "jitter_ms",
    default=_DEFAULTS.jitter_ms,
    type=click.FloatRange(min=0),
    metavar="MS",
    help="Random extra delay, up to this much.",
)
@click.option(
    "--media-ttl",
    default=_DEFAULTS.media_ttl,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="S",
    help="Lifetime of media URLs (0: expired at once).",
)
@click.option(
    "--quiet-s",
    "--quiet",
    "quiet_s",
    default=_DEFAULTS.quiet_s,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="S",
    help="The bot is done when nothing happened for this long.",
)
@click.option("--seed", default=None, type=int, help="Seed for duplicates, reordering and faults.")
@click.option(
    "--ignore",
    multiple=True,
    metavar="FIELD",
    help="Also ignore this send field in the check (dotted path, * wildcards).",
)
@click.option(
    "--journal-name",
    "--journal",
    "journal_name",
    default=None,
    metavar="NAME",
    help="Name of the run's journal cassette (default NAME.run-<time>).",
)
@click.option("--no-journal", is_flag=True, help="Do not keep the run's journal in the store.")
@click.option(
    "--proxy-port",
    default=None,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Also run an HTTP(S) proxy here (on --graph-host) that sends Meta's hosts to "
    "the fake Graph API, for a bot using HTTPS_PROXY (0 picks a free port).",
)
@click.option(
    "--confdir",
    metavar="DIR",
    default=None,
    help="With --proxy-port: mitmproxy's configuration directory, where its CA lives "
    "[default: ~/.mitmproxy].",
)
@click.option(
    "--redirect-host",
    "redirect_hosts",
    multiple=True,
    metavar="HOST",
    help="With --proxy-port: also send this host to the fake Graph API (repeatable).",
)
def replay_cmd(
    name: str,
    db: str | None,
    check_: bool,
    update: bool,
    as_json: bool,
    no_sign: bool,
    bad_signature: bool,
    no_journal: bool,
    **fields: Any,
) -> None:
    """Replay cassette NAME against the bot at --bot, then compare its sends with the recording.

    NAME may also be an exported cassette directory (holding cassette.json): it is imported
    into a throwaway store and replayed from there, without a journal (--db is not used).
    """
    import asyncio

    from pseudowa.proxy.sandbox.sandbox import replay
    from pseudowa.storage.export import is_export_dir

    given = [
        flag
        for flag, on in (
            ("--signing", fields["signing"]),
            ("--no-sign", no_sign),
            ("--bad-signature", bad_signature),
        )
        if on
    ]
    if len(given) > 1:
        raise UserError(f"{given[0]} and {given[1]} exclude each other")
    fields["signing"] = fields["signing"] or (
        "none" if no_sign else "bad" if bad_signature else "valid"
    )
    fields["journal"] = not no_journal
    exported = is_export_dir(name) or "/" in name  # cassette names never hold a "/"
    if update and not check_:
        raise UserError("--update goes with --check: it accepts the sends the check compares")
    if update and (no_journal or exported):
        raise UserError(
            "--update needs the run's journal in the store: drop --no-journal, and replay "
            "a cassette of the store by name"
        )
    try:
        config = SandboxConfig(**fields)
    except ConfigError as e:
        raise ConfigError(_as_options(str(e))) from e
    progress = not as_json and sys.stderr.isatty()
    on_attempt = _show_attempt if progress else None
    on_progress = _ProgressLine(
        sys.stderr.isatty() and not as_json,
        config.emitter_config().retry.describe(config.timeout_s),
    )

    def run(store: Any) -> Any:
        try:
            return asyncio.run(
                replay(
                    name,
                    config,
                    store=store,
                    on_attempt=on_attempt,
                    on_line=_note,
                    on_progress=on_progress,
                )
            )
        except VerifyFailed as e:
            raise VerifyFailed(f"{e} (use --skip-verify to bypass)") from e
        except ListenError:
            raise  # already says which listener and why
        except OSError as e:
            where = f"{config.graph_host}:{config.graph_port}"
            raise UserError(f"cannot listen on {where} or reach the bot: {e.strerror or e}") from e

    updated: int | None = None
    if exported:
        if config.journal_name:
            raise UserError(
                "--journal needs a cassette in the store: import the directory "
                "first with `pseudowa cassette import`, then replay it by name"
            )
        report = run(None)  # a throwaway store, deleted after the run
    else:
        with open_store(db) as store:
            report = run(store)
            if update and not report.ok and report.journal is not None:
                from pseudowa.proxy.sandbox.replay import accept_run

                updated = accept_run(store, name, report.journal)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.render():
            click.echo(line)
    if updated is not None:
        click.echo(
            f"updated {name}: this run's {updated} sends are now the recording "
            "(history: check-update)",
            err=as_json,
        )
        return
    if check_ and not report.ok:
        sys.exit(1)


def _as_options(message: str) -> str:
    """A config error in the words of the command line: fields named as their options."""
    for f in dataclasses.fields(SandboxConfig):
        option = (
            "--redirect-host" if f.name == "redirect_hosts" else "--" + f.name.replace("_", "-")
        )
        message = re.sub(rf"\b{f.name}\b", option, message)
    return message


class _ProgressLine:
    """Where the webhooks stand while retries are pending: one line redrawn on a terminal,
    plain lines otherwise (a CI log), so a long wait is never silent. The first failed
    attempt starts the waiting: it is announced with the worst case of Meta's schedule."""

    def __init__(self, redraw: bool, worst_case: str) -> None:
        self.redraw = redraw
        self.worst_case = worst_case
        self.started = False
        self.shown = False

    def __call__(self, progress: Any) -> None:
        if not self.started:
            self.started = True
            click.echo(f"  {self.worst_case}", err=True)
        line = f"  waiting: {progress.line()}"
        if self.redraw:
            click.echo(f"\r\x1b[K{line}", err=True, nl=False)
            self.shown = True
            if not progress.retrying:
                click.echo("", err=True)  # settled: keep the last line
                self.shown = False
        else:
            click.echo(line, err=True)


def _show_attempt(attempt: Any, outcome: Any) -> None:
    result = attempt.status if attempt.status is not None else attempt.error
    copy = f" (copy {attempt.copy})" if attempt.copy else ""
    retry = f" retry {attempt.attempt}" if attempt.attempt else ""
    click.echo(f"  -> {outcome.label}{copy}{retry}: {result}", err=True)


def _note(line: str) -> None:  # the proxy's banner and mitmproxy's warnings
    click.echo(line, err=True)
