"""`pseudowa record`: mitmproxy in-process (DumpMaster) with the recorder addon.

Up to four listeners, all on `host` (127.0.0.1 by default):

    webhook  reverse proxy to the bot's webhook; Meta's callback URL points here (via a tunnel)
    graph    reverse proxy to graph.facebook.com; the bot's Graph base URL points here
    media    reverse proxy to lookaside.fbsbx.com; media URLs in Graph answers are rewritten here
    proxy    a regular HTTP(S) proxy, for bots that keep Meta's URLs and use HTTPS_PROXY
             with mitmproxy's CA certificate

Every exchange through them lands in the cassette (the `Recorder` addon classifies,
scrubs and writes it). `record()` runs until its `stop` event is set (the CLI sets it
on SIGINT/SIGTERM), then mitmproxy shuts down and the recorder flushes.

mitmproxy is imported inside the functions that need it, so that loading the CLI
(and `pseudowa cassette ls`) does not pay for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from pseudowa.storage.records import Exchange
from pseudowa.storage.store import describe_url
from pseudowa.storage.store import resolve_url

from pseudowa.proxy.contract import webhooks
from pseudowa.proxy.errors import UserError
# Shared with `replay --proxy-port` (proxy/mitm/runner.py); the old names stay importable here.
from pseudowa.proxy.mitm.runner import CA_CERT_NAME  # noqa: F401
from pseudowa.proxy.mitm.runner import DEFAULT_CONFDIR
from pseudowa.proxy.mitm.runner import LogRelay as _LogRelay
from pseudowa.proxy.mitm.runner import Master
from pseudowa.proxy.mitm.runner import bind_failure as _bind_failure
from pseudowa.proxy.mitm.runner import ca_cert_path
from pseudowa.proxy.mitm.runner import cannot_listen
from pseudowa.proxy.mitm.runner import check_free as _check_free
from pseudowa.proxy.mitm.runner import close_connections as _close_connections
from pseudowa.proxy.mitm.runner import close_listeners as _close_listeners
from pseudowa.proxy.mitm.runner import drop_error_check as _drop_error_check
from pseudowa.proxy.mitm.runner import one_line as _one_line
from pseudowa.proxy.mitm.runner import show_host as _show_host

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_WEBHOOK_PORT = 8090
DEFAULT_GRAPH_PORT = 8091
DEFAULT_MEDIA_PORT = 8092
DEFAULT_PROXY_PORT = 8093
GRAPH_URL = "https://graph.facebook.com"
MEDIA_URL = "https://lookaside.fbsbx.com"
MEDIA_HOST = "lookaside.fbsbx.com"
MODES = ("new", "append", "overwrite")
SOURCES = ("meta", "sandbox")
KINDS = ("webhook", "graph", "media")
STOP_GRACE_S = 5.0  # on stop, exchanges in flight get this long to finish and be recorded

Echo = Callable[[str], None]


@dataclass
class RecordOptions:
    """Everything `pseudowa record` can be told. A port of 0 picks a free one."""

    name: str
    db: str | None = None  # store URL; None: $PSEUDOWA_DB or the default store
    bot_webhook: str | None = None  # e.g. http://127.0.0.1:8000/webhook; None: no webhook listener
    host: str = DEFAULT_HOST
    webhook_port: int = DEFAULT_WEBHOOK_PORT
    graph_port: int = DEFAULT_GRAPH_PORT
    media_port: int = DEFAULT_MEDIA_PORT
    proxy_port: int = DEFAULT_PROXY_PORT
    graph_upstream: str = GRAPH_URL
    media_upstream: str = MEDIA_URL
    mode: str = "new"  # new | append | overwrite
    source: str = "meta"  # meta | sandbox
    app_secret: str = ""
    access_token: str = ""
    verify_token: str = ""
    pseudonymize: bool = False
    regular_proxy: bool = True
    confdir: str | None = None  # mitmproxy's confdir (its CA lives there); None: ~/.mitmproxy
    ssl_insecure: bool = False  # do not verify upstream TLS certificates


@dataclass(frozen=True)
class Listeners:
    """Where the running recorder listens (actual ports) and the CA a proxy client must trust."""

    webhook_url: str | None  # with the bot's webhook path; None without --bot-webhook
    graph_url: str
    media_url: str
    proxy_url: str | None  # None with --no-proxy
    ca_cert_path: Path


@dataclass
class RecordSummary:
    """What a recording session wrote."""

    cassette: str
    counts: dict[str, int] = field(default_factory=dict)
    media_bytes: int = 0
    duration_s: float = 0.0
    listeners: Listeners | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def render(self) -> str:
        per_kind = ", ".join(f"{self.counts.get(k, 0)} {k}" for k in KINDS)
        extra = "".join(f", {n} {k}" for k, n in sorted(self.counts.items()) if k not in KINDS)
        return (
            f"recorded {self.cassette}: {self.total} exchanges ({per_kind}{extra}), "
            f"{self.media_bytes} media bytes in {self.duration_s:.1f} s"
        )


# -- plan: validate URLs, choose ports ------------------------------------------------------


@dataclass(frozen=True)
class _Listener:
    label: str  # webhook | graph | media | proxy
    spec: str  # mitmproxy mode spec, e.g. reverse:https://graph.facebook.com@127.0.0.1:8091
    port: int  # requested (free ports already chosen for 0)
    upstream: str | None  # origin the reverse proxy forwards to
    path: str = ""  # the bot's webhook path, shown in the listener URL


def _origin(url: str, what: str, *, allow_path: bool) -> tuple[str, str]:
    """`scheme://host[:port]` of an upstream URL, and its path; UserError when unusable."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{what} must be an http:// or https:// URL, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"{what} has an invalid port: {url!r}") from None
    path = parts.path.rstrip("/")
    if (path or parts.query) and not allow_path:
        raise UserError(f"{what} must be a scheme, host and port only (no path): {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return origin, parts.path or "/"


def _free_ports(host: str, count: int) -> list[int]:
    """`count` distinct ports free on `host` right now (held open together, so distinct)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    except OSError as e:
        raise UserError(f"cannot listen on {host}: {e.strerror or e}") from e
    finally:
        for s in socks:
            s.close()


def plan_listeners(options: RecordOptions) -> list[_Listener]:
    """The mitmproxy mode specs to run, ports of 0 replaced by free ones.

    Free ports are chosen here rather than by mitmproxy because the media listener's
    address must be known before start: media URLs in Graph answers are rewritten to it.
    """
    wanted: list[tuple[str, int, str | None, str]] = []
    if options.bot_webhook:
        origin, path = _origin(options.bot_webhook, "--bot-webhook", allow_path=True)
        wanted.append(("webhook", options.webhook_port, origin, path))
    graph, _ = _origin(options.graph_upstream, "--graph-upstream", allow_path=False)
    media, _ = _origin(options.media_upstream, "--media-upstream", allow_path=False)
    wanted.append(("graph", options.graph_port, graph, ""))
    wanted.append(("media", options.media_port, media, ""))
    if options.regular_proxy:
        wanted.append(("proxy", options.proxy_port, None, ""))
    for label, port, _, _ in wanted:
        if not 0 <= port <= 65535:
            raise UserError(f"--{label}-port must be between 0 and 65535, not {port}")
    explicit = [port for _, port, _, _ in wanted if port]
    if len(set(explicit)) != len(explicit):
        dup = next(p for p in explicit if explicit.count(p) > 1)
        raise UserError(f"two listeners cannot share port {dup}: give each its own port")
    free = iter(_free_ports(options.host, sum(1 for _, port, _, _ in wanted if port == 0)))
    out = []
    for label, port, upstream, path in wanted:
        port = port or next(free)
        mode = f"reverse:{upstream}" if upstream else "regular"
        # mitmproxy splits host and port at the last ":", so an IPv6 host goes in bare.
        out.append(_Listener(label, f"{mode}@{options.host}:{port}", port, upstream, path))
    return out


# -- live lines -------------------------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def describe(exchange: Exchange) -> str:
    """What an exchange meant, in a few words (for the live line); never raises."""
    try:
        return _describe(exchange)
    except Exception:  # a description is decoration: a body we cannot read is not an error
        return ""


def _describe(x: Exchange) -> str:
    method = x.method.upper()
    if x.kind == "webhook":
        if method == "GET" and "hub.mode" in x.url:
            return "verify"
        payload = webhooks.parse(x.request_body)
        events = webhooks.events(payload) if payload else []
        return ", ".join(" ".join(p for p in (e.category, e.type, e.wamid) if p) for e in events)
    if x.kind == "media":
        if x.response_status != 200:
            return ""
        # The recorder keeps downloaded bytes as a media blob, not in the exchange.
        size = x.annotations.get("media_size") or str(len(x.response_body))
        mime = x.annotations.get("mime_type") or _header(x.response_headers, "content-type") or ""
        check = x.annotations.get("sha256")
        return f"{size} B {mime}".strip() + (f", sha256 {check}" if check else "")
    request = _json(x.request_body) if method == "POST" else None
    answer = _json(x.response_body)
    if isinstance(request, dict) and urlsplit(x.url).path.rstrip("/").endswith("/messages"):
        if request.get("status") == "read":
            return f"mark read {request.get('message_id', '')}".strip()
        sent = answer.get("messages") if isinstance(answer, dict) else None
        wamid = sent[0].get("id") if isinstance(sent, list) and sent and isinstance(sent[0], dict) else None
        return " ".join(str(p) for p in ("send", request.get("type"), wamid) if p)
    if method == "GET" and isinstance(answer, dict) and "mime_type" in answer:
        return f"media {answer.get('id', '')} {answer['mime_type']} {answer.get('file_size', '?')} B"
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and "code" in error:
        return f"error #{error['code']}"
    return ""


def live_line(kind: str, exchange: Exchange) -> str:
    """`[webhook] POST /webhook 200 12 ms (message image wamid.X)`."""
    path = urlsplit(exchange.url).path or exchange.url or "/"
    outcome = str(exchange.response_status) if exchange.response_status is not None else (
        f"error: {exchange.error}" if exchange.error else "no answer"
    )
    what = describe(exchange)
    ms = exchange.duration * 1000
    return f"[{kind}] {exchange.method} {path} {outcome} {ms:.0f} ms" + (f" ({what})" if what else "")


def _shown_url(db_url: str) -> str:
    """The store URL without its password (it is printed)."""
    try:
        return describe_url(make_url(db_url))
    except Exception:  # unparsable: the recorder reports it; print nothing of it meanwhile
        return "the store"


def banner(options: RecordOptions, listeners: Listeners, db_url: str) -> list[str]:
    """Where everything is and how to point Meta and the bot at it."""
    lines = [f"recording cassette {options.name} ({options.mode}, source {options.source}) "
             f"into {_shown_url(db_url)}"]
    if listeners.webhook_url:
        lines.append(f"  webhook  {listeners.webhook_url} -> {options.bot_webhook}")
        lines.append("           set Meta's callback URL to a public tunnel reaching this listener, "
                     "same path")
    lines.append(f"  graph    {listeners.graph_url} -> {options.graph_upstream}")
    lines.append("           set the bot's Graph base URL to this")
    lines.append(f"  media    {listeners.media_url} -> {options.media_upstream}")
    lines.append("           media URLs in Graph answers are rewritten to this listener")
    if listeners.proxy_url:
        ca = listeners.ca_cert_path
        lines.append(f"  proxy    {listeners.proxy_url} (HTTP(S) proxy, instead of changing base URLs)")
        lines.append(f"           trust mitmproxy's CA certificate {ca}, e.g.")
        lines.append(f"           HTTPS_PROXY={listeners.proxy_url} SSL_CERT_FILE={ca} "
                     f"REQUESTS_CA_BUNDLE={ca}")
    lines.append("press Ctrl-C to stop")
    return lines


# -- mitmproxy glue -------------------------------------------------------------------------


class _Lifecycle:
    """Our own small addon for start-up: learns the bound addresses once mitmproxy runs,
    notes a `done` that came without `running`.

    Once serving it leaves the addon chain: mitmproxy offers every event of every flow to
    every addon in it, and under load each one costs about 1% of the throughput.
    """

    def __init__(self, listeners: list[_Listener]) -> None:
        self.listeners = listeners
        self.started = asyncio.Event()  # set by `running` (or `done`, if it never ran)
        self.bound: dict[str, int] = {}  # label -> actual port
        self.startup_error: str | None = None
        self.ran = False  # `running` came: mitmproxy itself calls `done` on its addons
        self.done_called = False  # `done` came without `running`

    def running(self) -> None:
        from mitmproxy import ctx

        master: Master = ctx.master
        proxyserver = master.addons.get("proxyserver")
        by_spec = {inst.mode.full_spec: inst for inst in proxyserver.servers}
        for listener in self.listeners:
            inst = by_spec.get(listener.spec)
            addrs = inst.listen_addrs if inst is not None and inst.is_running else ()
            if not addrs:
                host = listener.spec.rsplit("@", 1)[1].rsplit(":", 1)[0]
                self.startup_error = cannot_listen(
                    host, listener.port, listener.label,
                    _bind_failure(getattr(inst, "last_exception", None)),
                )
                master.shutdown()
                break
            self.bound[listener.label] = int(addrs[0][1])
        self.ran = True
        self.started.set()
        if self.startup_error is None:
            master.addons.remove(self)  # a new chain: the event being dispatched goes on

    def done(self) -> None:
        if self.ran:  # our removal, or mitmproxy's own `done` after a failed start
            return
        self.done_called = True
        self.started.set()


def _listeners(plan: list[_Listener], bound: Mapping[str, int], host: str,
               confdir: str | None) -> Listeners:
    shown = _show_host(host)
    by_label = {item.label: item for item in plan}

    def url(label: str) -> str | None:
        if label not in by_label:
            return None
        path = by_label[label].path
        return f"http://{shown}:{bound.get(label, by_label[label].port)}" + (
            path if path not in ("", "/") else ""
        )

    graph, media = url("graph"), url("media")
    assert graph is not None and media is not None
    return Listeners(url("webhook"), graph, media, url("proxy"), ca_cert_path(confdir))


async def record(
    options: RecordOptions,
    *,
    on_line: Echo,
    on_ready: Callable[[Listeners], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RecordSummary:
    """Record through mitmproxy until `stop` is set; print through `on_line`.

    Raises `UserError` for a configuration mistake (bad store URL, cassette already
    there in mode new, port taken) before anything is recorded, and after shutdown
    when a write to the store failed (the summary is printed first).
    """
    from mitmproxy import exceptions
    from mitmproxy.options import Options
    from mitmproxy.tools.dump import DumpMaster

    from pseudowa.addons.recorder import Recorder

    if options.mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if options.source not in SOURCES:
        raise UserError(f"source must be one of {', '.join(SOURCES)}, not {options.source!r}")
    plan = plan_listeners(options)
    for item in plan:
        _check_free(options.host, item.port, item.label)
    by_label = {item.label: item for item in plan}
    db_url = resolve_url(options.db)
    media_rewrite = f"http://{_show_host(options.host)}:{by_label['media'].port}"
    # Flows through a reverse listener are classified by its target (media, Graph or
    # webhook, even when all of them are on 127.0.0.1); Meta's own hosts and these
    # upstreams also classify what goes through the regular proxy listener.
    graph_upstreams = list(dict.fromkeys([by_label["graph"].upstream or "", GRAPH_URL]))
    media_upstreams = list(dict.fromkeys([by_label["media"].upstream or "", MEDIA_URL]))
    secrets = [s for s in (options.access_token, options.verify_token) if s]

    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def echo(line: str) -> None:
        # The recorder may report from a writer thread; lines are printed on the loop.
        if threading.get_ident() == loop_thread:
            on_line(line)
        else:
            loop.call_soon_threadsafe(on_line, line)

    relay = _LogRelay()
    relay.install()
    started = time.monotonic()
    opts: Any = Options()
    master: Master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    lifecycle = _Lifecycle(plan)
    recorder: Any = None
    listeners: Listeners | None = None
    try:
        _drop_error_check(master)
        try:
            # Core options first: a bad mode spec fails before the store is touched. Setting
            # confdir makes the TLS addon load its CA now (creating it on first use).
            opts.update(
                confdir=options.confdir or DEFAULT_CONFDIR,
                mode=[item.spec for item in plan],
                connection_strategy="lazy",
                ssl_insecure=options.ssl_insecure,
            )
            ca = ca_cert_path(options.confdir)
            if not ca.is_file():
                why = relay.records[-1] if relay.records else "no reason given"
                raise UserError(f"mitmproxy could not create its CA certificate {ca}: {why}")
            recorder = Recorder()
            recorder.on_recorded = lambda kind, exchange: echo(live_line(kind, exchange))
            master.addons.add(recorder, lifecycle)
            opts.update(
                pseudowa_db=db_url,
                pseudowa_cassette=options.name,
                pseudowa_mode=options.mode,
                pseudowa_source=options.source,
                pseudowa_app_secret=options.app_secret,
                pseudowa_secrets=secrets,
                pseudowa_pseudonymize=options.pseudonymize,
                pseudowa_webhook_upstream=options.bot_webhook or "",
                pseudowa_graph_upstreams=graph_upstreams,
                pseudowa_media_upstreams=media_upstreams,
                pseudowa_media_hosts=[MEDIA_HOST],
                pseudowa_media_rewrite=media_rewrite,
            )
        except exceptions.OptionsError as e:
            raise UserError(_one_line(e)) from e

        run = loop.create_task(master.run(), name="pseudowa record: mitmproxy")
        stopper = loop.create_task(_stop_on(stop, master, lifecycle, recorder),
                                   name="pseudowa record: stop")
        try:
            if await _started(run, lifecycle):
                started = time.monotonic()
                listeners = _listeners(plan, lifecycle.bound, options.host, options.confdir)
                for line in banner(options, listeners, db_url):
                    on_line(line)
                for warning in relay.records:  # e.g. an expired CA
                    on_line(f"! {warning}")
                relay.echo = echo  # from now on, mitmproxy's warnings are shown as they come
                if on_ready is not None:
                    on_ready(listeners)
            await run
        finally:
            stopper.cancel()
            if not run.done():  # interrupted (cancelled, or on_ready raised): stop cleanly anyway
                master.shutdown()
                await asyncio.shield(run)
            await _close_listeners(master)
            await _close_connections(master)
        await asyncio.sleep(0)  # live lines scheduled from other threads are printed first
    finally:
        relay.echo = None
        relay.uninstall()
        if not lifecycle.ran and not lifecycle.done_called:
            # mitmproxy never ran (bad option, stopped during start-up): addons still get `done`.
            try:
                await master.done()
            except Exception:
                logger.exception("mitmproxy shutdown failed")

    if lifecycle.startup_error is not None:
        raise UserError(lifecycle.startup_error)
    summary = RecordSummary(
        cassette=options.name,
        counts={str(k): int(v) for k, v in dict(getattr(recorder, "counts", {})).items()},
        media_bytes=int(getattr(recorder, "media_bytes", 0)),
        duration_s=time.monotonic() - started,
        listeners=listeners,
    )
    on_line(summary.render())
    failed = getattr(recorder, "failed", None)
    if failed is not None:
        raise UserError(f"recording stopped: {_one_line(failed)}")
    return summary


async def _started(run: asyncio.Task[None], lifecycle: _Lifecycle) -> bool:
    """Wait until mitmproxy is serving (True) or has stopped or failed to start (False)."""
    waiter = asyncio.get_running_loop().create_task(lifecycle.started.wait())
    try:
        await asyncio.wait([run, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return (lifecycle.started.is_set() and not lifecycle.done_called
            and lifecycle.startup_error is None and not run.done())


async def _stop_on(
    stop: asyncio.Event | None, master: Master, lifecycle: _Lifecycle, recorder: Any
) -> None:
    """On `stop`: no new connections, let exchanges in flight finish, then shut down."""
    if stop is None:
        await asyncio.Event().wait()  # forever: cancelled once mitmproxy stops by itself
        return
    await stop.wait()
    if lifecycle.ran and lifecycle.startup_error is None and not master.should_exit.is_set():
        await _close_listeners(master)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_S
        while recorder.unfinished and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await _close_connections(master)
    master.shutdown()


def run_record(options: RecordOptions, on_line: Echo) -> RecordSummary:
    """Blocking entry point for the CLI: record until SIGINT or SIGTERM."""

    async def main() -> RecordSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises instead
                pass
        try:
            return await record(options, on_line=on_line, stop=stop)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
