"""One run sequence for an embedded mitmproxy, shared by `pseudowa record` and `ProxyThread`.

`pseudowa record` runs it on its own event loop (proxy/mitm/record.py); `pseudowa replay
--proxy-port` runs it in a thread of its own next to the fake Graph API
(proxy/mitm/thread.py), so that mitmproxy's loop-wide settings (its exception handler,
eager tasks on Python 3.12) leave the replay's loop alone. Both want the same things,
which `run()` does once:

  - a port that is taken reported as one line (`check_free` before anything starts,
    `BoundPorts` for a bind that fails anyway), naming the option to change;
  - mitmproxy's log kept off the terminal (`LogRelay`) and its start-up error check
    replaced by our own one-line errors;
  - its CA created in the confdir, where the user can find it;
  - a shutdown that closes the listeners and the bot's keep-alive connections instead
    of leaving them to the loop, after exchanges in flight had a moment to finish.

The order follows mitmproxy's own `tools/main.py`: DumpMaster is built inside a coroutine
(it takes the running loop), the core options come first, then the addons, then their
options, then `master.run()`. mitmproxy is imported inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import ListenError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.ca import DEFAULT_CONFDIR
from pseudowa.proxy.mitm.ca import ca_cert_path

if TYPE_CHECKING:
    from mitmproxy.addons.proxyserver import Proxyserver

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0  # on stop, exchanges in flight get this long to finish (and be recorded)

Echo = Callable[[str], None]


# -- one-line messages ------------------------------------------------------------------------


def show_host(host: str) -> str:
    """A host as it goes into a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def one_line(error: BaseException) -> str:
    """The first non-blank line of an error's text (the CLI prints errors as one line)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def bind_failure(error: BaseException | None) -> str:
    """Why a listener did not bind, in words ("Address already in use")."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return one_line(error) if error is not None else "the server did not start"


def cannot_listen(host: str, port: int, label: str, why: str) -> str:
    """The one line for a listener that could not bind, naming the option to change."""
    return (
        f"cannot listen on {show_host(host)}:{port} for the {label} listener: {why} "
        f"(choose another with --{label}-port)"
    )


def check_free(host: str, port: int, label: str) -> None:
    """Fail early, before anything is started or written, when a listener's port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # asyncio's servers set SO_REUSEADDR too: a port in TIME_WAIT is usable, a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ListenError(cannot_listen(host, port, label, e.strerror or str(e))) from e


# -- mitmproxy's log --------------------------------------------------------------------------


class LogRelay(logging.Handler):
    """mitmproxy's warnings and errors, kept during start-up and then shown as `! ...` lines.

    Installed on the root logger in place of mitmproxy's terminal log and error check,
    so that nothing else reaches the terminal (and Python's last-resort handler stays quiet).
    Until `echo` is set, the lines are only kept in `records`.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []
        self.echo: Echo | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip().splitlines()
        except Exception:  # a bad format string in someone's log call
            text = [str(record.msg)]
        first = text[0] if text else record.levelname
        if record.exc_info and record.exc_info[1] is not None:
            first += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.records.append(first)
        if self.echo is not None:
            self.echo(f"! {first}")

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)


# -- the part of mitmproxy's Master we use -----------------------------------------------------


class _Addons(Protocol):
    def get(self, name: str) -> Any: ...
    def add(self, *addons: Any) -> None: ...
    def remove(self, addon: Any) -> None: ...


class _Options(Protocol):
    def update(self, **kwargs: Any) -> None: ...


class Master(Protocol):
    """What we call on mitmproxy's `Master`, typed: mitmproxy leaves these unannotated."""

    @property
    def addons(self) -> _Addons: ...
    @property
    def options(self) -> _Options: ...
    @property
    def should_exit(self) -> asyncio.Event: ...
    def shutdown(self) -> None: ...
    async def run(self) -> None: ...
    async def done(self) -> None: ...


# -- what to run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One mitmproxy listener: its job (which also names its `--<label>-port` option),
    its mode without the address, and where it binds (port 0: the system chooses)."""

    label: str  # webhook | graph | media | proxy
    host: str
    port: int
    mode: str = "regular"  # or e.g. reverse:https://graph.facebook.com

    @property
    def spec(self) -> str:
        """mitmproxy's mode spec; it splits host and port at the last ":", so an IPv6
        host goes in bare."""
        return f"{self.mode}@{self.host}:{self.port}"


@dataclass(frozen=True)
class RunConfig:
    """One embedded mitmproxy: its listeners, the caller's addons and their options."""

    listeners: Sequence[Listener]
    addons: Sequence[object] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    confdir: str | None = None  # None: ~/.mitmproxy
    ssl_insecure: bool = False  # do not verify upstream TLS certificates
    name: str = "pseudowa"  # names the asyncio tasks


class BoundPorts:
    """Our own small addon next to the caller's: learns the port each listener bound once
    mitmproxy runs (or the one line saying why one did not), and notes a `done` that came
    without `running`.

    Once serving it leaves the addon chain: mitmproxy offers every event of every flow to
    every addon in it, and under load each one costs about 1% of the throughput.
    """

    def __init__(self, master: Master, listeners: Sequence[Listener]) -> None:
        self.master = master
        self.listeners = list(listeners)
        self.started = asyncio.Event()  # set by `running` (or `done`, if it never ran)
        self.ports: dict[str, int] = {}  # label -> bound port
        self.error: str | None = None  # why a listener did not bind
        self.ran = False  # `running` came: mitmproxy itself calls `done` on its addons
        self.done_early = False  # `done` came without `running`

    def running(self) -> None:
        proxyserver = _proxyserver(self.master)
        servers = list(proxyserver.servers) if proxyserver is not None else []
        by_spec = {inst.mode.full_spec: inst for inst in servers}
        for listener in self.listeners:
            inst = by_spec.get(listener.spec)
            addrs = inst.listen_addrs if inst is not None and inst.is_running else ()
            if not addrs:
                why = bind_failure(inst.last_exception if inst is not None else None)
                self.error = cannot_listen(listener.host, listener.port, listener.label, why)
                self.master.shutdown()
                break
            self.ports[listener.label] = int(addrs[0][1])
        self.ran = True
        self.started.set()
        if self.error is None:
            self.master.addons.remove(self)  # a new chain: the event being dispatched goes on

    def done(self) -> None:
        if self.ran:  # our removal, or mitmproxy's own `done` after a failed start
            return
        self.done_early = True
        self.started.set()

    @property
    def serving(self) -> bool:
        """`running` came and every listener is bound."""
        return self.ran and self.error is None


# -- the run sequence -------------------------------------------------------------------------


async def run(
    config: RunConfig,
    *,
    relay: LogRelay,
    on_serving: Callable[[Mapping[str, int]], None],
    stop: asyncio.Event | None = None,
    unfinished: Callable[[], int] | None = None,
    grace_s: float = STOP_GRACE_S,
) -> bool:
    """Run mitmproxy until `stop` is set (or it stops by itself); whether it served.

    `on_serving` gets the bound port of each listener, by label, once all of them listen.
    On `stop` the listeners close, exchanges in flight get `grace_s` to finish (while
    `unfinished()` counts any), then the connections left open close and mitmproxy stops.
    `relay` is installed for the run; the caller decides when it echoes.

    Raises `UserError` (one line) for a bad option or a CA that cannot be created, before
    anything listens, and once everything is stopped again when a listener could not bind.
    (Not yet `ListenError`: that is an OSError, which the replay CLI re-words today.)
    """
    from mitmproxy.options import Options
    from mitmproxy.tools.dump import DumpMaster

    loop = asyncio.get_running_loop()
    relay.install()
    master: Master = DumpMaster(Options(), with_termlog=False, with_dumper=False)
    bound = BoundPorts(master, config.listeners)
    try:
        drop_error_check(master)
        _configure(master, config, bound, relay)
        running = loop.create_task(master.run(), name=f"{config.name}: mitmproxy")
        stopper = loop.create_task(
            _stop_on(stop, master, bound, unfinished, grace_s), name=f"{config.name}: stop"
        )
        try:
            if await _started(running, bound):
                on_serving(dict(bound.ports))
            await running
        finally:
            stopper.cancel()
            if not running.done():  # interrupted (cancelled, or on_serving raised): stop anyway
                master.shutdown()
                await asyncio.shield(running)
            await close_listeners(master)
            await close_connections(master)
    finally:
        relay.echo = None
        relay.uninstall()
        if not bound.ran and not bound.done_early:
            # mitmproxy never ran (bad option, stopped during start-up): addons still get `done`.
            try:
                await master.done()
            except Exception:
                logger.exception("mitmproxy shutdown failed")
    if bound.error is not None:
        raise ListenError(bound.error)
    return bound.serving


def _configure(master: Master, config: RunConfig, bound: BoundPorts, relay: LogRelay) -> None:
    """Core options, the CA, the addons, their options; one line for what is wrong."""
    from mitmproxy import exceptions

    opts = master.options
    try:
        # Core options first: a bad mode spec fails before an addon touches anything (the
        # recorder opens its store when its options are set). Setting confdir makes the
        # TLS addon load its CA now, creating it on first use. Lazy connections: nothing
        # reaches a server before the addons saw the request (a redirected host is never
        # contacted).
        opts.update(
            confdir=config.confdir or DEFAULT_CONFDIR,
            mode=[listener.spec for listener in config.listeners],
            connection_strategy="lazy",
            ssl_insecure=config.ssl_insecure,
        )
        ca = ca_cert_path(config.confdir)
        if not ca.is_file():
            why = relay.records[-1] if relay.records else "no reason given"
            raise UserError(f"mitmproxy could not create its CA certificate {ca}: {why}")
        master.addons.add(*config.addons, bound)
        opts.update(**config.options)
    except exceptions.OptionsError as e:
        raise ConfigError(one_line(e)) from e


async def _started(running: asyncio.Task[None], bound: BoundPorts) -> bool:
    """Wait until mitmproxy is serving (True) or has stopped or failed to start (False)."""
    waiter = asyncio.get_running_loop().create_task(bound.started.wait())
    try:
        await asyncio.wait([running, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return bound.started.is_set() and bound.serving and not running.done()


async def _stop_on(
    stop: asyncio.Event | None,
    master: Master,
    bound: BoundPorts,
    unfinished: Callable[[], int] | None,
    grace_s: float,
) -> None:
    """On `stop`: no new connections, let exchanges in flight finish, then shut down."""
    if stop is None:
        await asyncio.Event().wait()  # forever: cancelled once mitmproxy stops by itself
        return
    await stop.wait()
    if bound.serving and not master.should_exit.is_set():
        await close_listeners(master)
        if unfinished is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            while unfinished() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        await close_connections(master)
    master.shutdown()


# -- mitmproxy glue ---------------------------------------------------------------------------


def _proxyserver(master: Master) -> Proxyserver | None:
    from mitmproxy.addons.proxyserver import Proxyserver

    found = master.addons.get("proxyserver")
    return found if isinstance(found, Proxyserver) else None


def drop_error_check(master: Master) -> None:
    """DumpMaster's ErrorCheck prints to stderr and sys.exit()s on a start-up error; we
    report start-up errors ourselves, as one line."""
    check = master.addons.get("errorcheck")
    if check is not None:
        master.addons.remove(check)
        check.finish()  # uninstalls its log handler


async def close_listeners(master: Master) -> None:
    """Stop accepting connections (mitmproxy leaves its listening sockets open when it stops)."""
    proxyserver = _proxyserver(master)
    if proxyserver is None:
        return
    try:
        await proxyserver.servers.update([])
    except Exception as e:  # best effort: the process usually exits next
        logger.debug("closing the listeners failed: %s", e)


async def close_connections(master: Master, timeout_s: float = 1.0) -> None:
    """Close the connections still open (the bot's keep-alive ones) and wait for them.

    Each one's handler task is cancelled, as mitmproxy's own inactivity timeout does, so
    the connection ends normally; cancelling the outer task instead makes Python 3.11
    print a CancelledError traceback for every connection left when the loop closes.
    """
    proxyserver = _proxyserver(master)
    if proxyserver is None:
        return
    for handler in list(proxyserver.connections.values()):
        io = handler.transports.get(handler.client)
        task = io.handler if io is not None else None
        if task is not None and not task.done():
            task.cancel("pseudowa is stopping")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while proxyserver.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)
