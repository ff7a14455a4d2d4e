"""`pseudowa record`: mitmproxy in-process (DumpMaster) with the recorder addon.

Up to four listeners, all on `host` (127.0.0.1 by default):

    webhook  reverse proxy to the bot's webhook; Meta's callback URL points here (via a tunnel)
    graph    reverse proxy to graph.facebook.com; the bot's Graph base URL points here
    media    reverse proxy to lookaside.fbsbx.com; media URLs in Graph answers are rewritten here
    proxy    a regular HTTP(S) proxy, for bots that keep Meta's URLs and use HTTPS_PROXY
             with mitmproxy's CA certificate

Every exchange through them lands in the cassette (the `Recorder` addon classifies,
scrubs and writes it) and is printed as one line (proxy/mitm/live.py). `record()` runs
mitmproxy through the run sequence in proxy/mitm/runner.py until its `stop` event is set
(the CLI sets it on SIGINT/SIGTERM); exchanges in flight then get a moment to finish,
mitmproxy shuts down and the recorder flushes.

mitmproxy is imported inside the functions that need it, so that loading the CLI
(and `pseudowa cassette ls`) does not pay for it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from pseudowa.addons.writer import RECORD_SOURCES
from pseudowa.addons.writer import RecordMode
from pseudowa.proxy.contract.hosts import GRAPH_URL
from pseudowa.proxy.contract.hosts import MEDIA_HOST
from pseudowa.proxy.contract.hosts import MEDIA_URL
from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import ListenError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.ca import ca_cert_path
from pseudowa.proxy.mitm.live import live_line
from pseudowa.proxy.mitm.runner import Echo
from pseudowa.proxy.mitm.runner import Listener
from pseudowa.proxy.mitm.runner import LogRelay
from pseudowa.proxy.mitm.runner import RunConfig
from pseudowa.proxy.mitm.runner import check_free
from pseudowa.proxy.mitm.runner import one_line
from pseudowa.proxy.mitm.runner import run
from pseudowa.proxy.mitm.runner import show_host
from pseudowa.storage.engine import describe_url
from pseudowa.storage.engine import parse_url
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore
from pseudowa.storage.store import resolve_url

if TYPE_CHECKING:
    from pseudowa.addons.recorder import Recorder

DEFAULT_HOST = "127.0.0.1"
DEFAULT_WEBHOOK_PORT = 8090
DEFAULT_GRAPH_PORT = 8091
DEFAULT_MEDIA_PORT = 8092
DEFAULT_PROXY_PORT = 8093
# The option values `record` takes (the CLI's choices), in their documented order.
MODES = RecordMode.names()
SOURCES = tuple(source.value for source in RECORD_SOURCES)


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
    mode: str = RecordMode.NEW.value  # a RecordMode: new | append | overwrite
    source: str = Source.META.value  # one of RECORD_SOURCES: meta | sandbox
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
        kinds = [str(kind) for kind in Kind]
        per_kind = ", ".join(f"{self.counts.get(k, 0)} {k}" for k in kinds)
        extra = "".join(f", {n} {k}" for k, n in sorted(self.counts.items()) if k not in kinds)
        return (
            f"recorded {self.cassette}: {self.total} exchanges ({per_kind}{extra}), "
            f"{self.media_bytes} media bytes in {self.duration_s:.1f} s"
        )


# -- plan: validate URLs, choose ports ------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """A listener `record` runs: mitmproxy's, where it forwards, and the path it shows."""

    listener: Listener  # its port already chosen when 0 was asked for
    upstream: str | None  # origin the reverse proxy forwards to; None: the regular proxy
    path: str = ""  # the bot's webhook path, shown in the listener URL


def _origin(url: str, what: str, *, allow_path: bool) -> tuple[str, str]:
    """`scheme://host[:port]` of an upstream URL, and its path; UserError when unusable."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be an http:// or https:// URL, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what} has an invalid port: {url!r}") from None
    path = parts.path.rstrip("/")
    if (path or parts.query) and not allow_path:
        raise ConfigError(f"{what} must be a scheme, host and port only (no path): {url!r}")
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
        raise ListenError(f"cannot listen on {host}: {e.strerror or e}") from e
    finally:
        for s in socks:
            s.close()


def plan_listeners(options: RecordOptions) -> list[Planned]:
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
            raise ConfigError(f"--{label}-port must be between 0 and 65535, not {port}")
    explicit = [port for _, port, _, _ in wanted if port]
    if len(set(explicit)) != len(explicit):
        dup = next(p for p in explicit if explicit.count(p) > 1)
        raise ConfigError(f"two listeners cannot share port {dup}: give each its own port")
    free = iter(_free_ports(options.host, sum(1 for _, port, _, _ in wanted if port == 0)))
    out = []
    for label, port, upstream, path in wanted:
        mode = f"reverse:{upstream}" if upstream else "regular"
        listener = Listener(label, options.host, port or next(free), mode)
        out.append(Planned(listener, upstream, path))
    return out


# -- what the user is told ------------------------------------------------------------------


def _shown_url(db_url: str) -> str:
    """The store URL without its password (it is printed)."""
    try:
        shown: str = describe_url(make_url(db_url))
    except Exception:  # unparsable: the recorder reports it; print nothing of it meanwhile
        return "the store"
    return shown


def banner(options: RecordOptions, listeners: Listeners, db_url: str) -> list[str]:
    """Where everything is and how to point Meta and the bot at it."""
    lines = [
        f"recording cassette {options.name} ({options.mode}, source {options.source}) "
        f"into {_shown_url(db_url)}"
    ]
    if listeners.webhook_url:
        lines.append(f"  webhook  {listeners.webhook_url} -> {options.bot_webhook}")
        lines.append(
            "           set Meta's callback URL to a public tunnel reaching this listener, "
            "same path"
        )
    lines.append(f"  graph    {listeners.graph_url} -> {options.graph_upstream}")
    lines.append("           set the bot's Graph base URL to this")
    lines.append(f"  media    {listeners.media_url} -> {options.media_upstream}")
    lines.append("           media URLs in Graph answers are rewritten to this listener")
    if listeners.proxy_url:
        ca = listeners.ca_cert_path
        lines.append(
            f"  proxy    {listeners.proxy_url} (HTTP(S) proxy, instead of changing base URLs)"
        )
        lines.append(f"           trust mitmproxy's CA certificate {ca}, e.g.")
        lines.append(
            f"           HTTPS_PROXY={listeners.proxy_url} SSL_CERT_FILE={ca} "
            f"REQUESTS_CA_BUNDLE={ca}"
        )
    lines.append("press Ctrl-C to stop")
    return lines


# -- the session --------------------------------------------------------------------------


def _listeners(plan: list[Planned], bound: Mapping[str, int], confdir: str | None) -> Listeners:
    by_label = {item.listener.label: item for item in plan}

    def url(label: str) -> str | None:
        if label not in by_label:
            return None
        item = by_label[label]
        base = f"http://{show_host(item.listener.host)}:{bound.get(label, item.listener.port)}"
        return base + (item.path if item.path not in ("", "/") else "")

    graph, media = url("graph"), url("media")
    assert graph is not None and media is not None
    return Listeners(url("webhook"), graph, media, url("proxy"), ca_cert_path(confdir))


def _recorder_options(
    options: RecordOptions, plan: list[Planned], db_url: str
) -> dict[str, object]:
    """The Recorder addon's options for this session."""
    by_label = {item.listener.label: item for item in plan}
    # Flows through a reverse listener are classified by its target (media, Graph or
    # webhook, even when all of them are on 127.0.0.1); Meta's own hosts and these
    # upstreams also classify what goes through the regular proxy listener.
    graph_upstreams = list(dict.fromkeys([by_label["graph"].upstream or "", GRAPH_URL]))
    media_upstreams = list(dict.fromkeys([by_label["media"].upstream or "", MEDIA_URL]))
    return {
        "pseudowa_db": db_url,
        "pseudowa_cassette": options.name,
        "pseudowa_mode": options.mode,
        "pseudowa_source": options.source,
        "pseudowa_app_secret": options.app_secret,
        "pseudowa_secrets": [s for s in (options.access_token, options.verify_token) if s],
        "pseudowa_pseudonymize": options.pseudonymize,
        "pseudowa_webhook_upstream": options.bot_webhook or "",
        "pseudowa_graph_upstreams": graph_upstreams,
        "pseudowa_media_upstreams": media_upstreams,
        "pseudowa_media_hosts": [MEDIA_HOST],
        "pseudowa_media_rewrite": f"http://{show_host(options.host)}:{by_label['media'].listener.port}",
    }


def _check_cassette(options: RecordOptions, db_url: str) -> None:
    """Refuse mode new onto an existing cassette before mitmproxy starts (and creates its
    CA in the confdir): a refused command must leave nothing behind.

    A SQLite file that does not exist yet holds no cassette, so it is not created here;
    the recorder's own check, once mitmproxy runs, stays the one that counts.
    """
    if options.mode != RecordMode.NEW.value:
        return
    parsed = parse_url(db_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not parsed.database.startswith("file:") and not path.is_file():
            return
    try:
        with CassetteStore.open(db_url) as store:
            taken = store.exists(options.name)
    except StoreError as e:
        raise UserError(f"cannot open the cassette store: {e}") from e
    if taken:
        raise UserError(f"cassette {options.name} exists; use --mode append or overwrite")


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
    from pseudowa.addons.recorder import Recorder

    if options.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if options.source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, not {options.source!r}")
    plan = plan_listeners(options)
    for item in plan:
        check_free(options.host, item.listener.port, item.listener.label)
    db_url = resolve_url(options.db)
    _check_cassette(options, db_url)

    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def echo(line: str) -> None:
        # The recorder may report from a writer thread; lines are printed on the loop.
        if threading.get_ident() == loop_thread:
            on_line(line)
        else:
            loop.call_soon_threadsafe(on_line, line)

    recorder = Recorder()
    recorder.on_recorded = lambda kind, exchange: echo(live_line(kind, exchange))
    relay = LogRelay()
    started = time.monotonic()
    listeners: Listeners | None = None

    def serving(bound: Mapping[str, int]) -> None:
        nonlocal started, listeners
        started = time.monotonic()
        listeners = _listeners(plan, bound, options.confdir)
        for line in banner(options, listeners, db_url):
            on_line(line)
        for warning in relay.records:  # e.g. an expired CA
            on_line(f"! {warning}")
        relay.echo = echo  # from now on, mitmproxy's warnings are shown as they come
        if on_ready is not None:
            on_ready(listeners)

    config = RunConfig(
        listeners=[item.listener for item in plan],
        addons=[recorder],
        options=_recorder_options(options, plan, db_url),
        confdir=options.confdir,
        ssl_insecure=options.ssl_insecure,
        name="pseudowa record",
    )
    await run(
        config,
        relay=relay,
        on_serving=serving,
        stop=stop,
        unfinished=lambda: recorder.unfinished,
    )
    await asyncio.sleep(0)  # live lines scheduled from other threads are printed first
    return _summarize(options, recorder, time.monotonic() - started, listeners, on_line)


def _summarize(
    options: RecordOptions,
    recorder: Recorder,
    duration_s: float,
    listeners: Listeners | None,
    on_line: Echo,
) -> RecordSummary:
    """Print what the session wrote; raise when a write failed, after saying so."""
    summary = RecordSummary(
        cassette=options.name,
        counts={str(k): int(v) for k, v in recorder.counts.items()},
        media_bytes=recorder.media_bytes,
        duration_s=duration_s,
        listeners=listeners,
    )
    on_line(summary.render())
    if recorder.failed is not None:
        raise UserError(f"recording stopped: {one_line(recorder.failed)}")
    return summary


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
