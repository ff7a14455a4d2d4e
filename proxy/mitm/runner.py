"""mitmproxy embedded in pseudowa: the pieces `record` and `replay --proxy-port` share.

`pseudowa record` runs DumpMaster on its own event loop (proxy/mitm/record.py);
`pseudowa replay --proxy-port` runs one in a thread of its own next to the fake Graph
API (`ProxyThread`), so that mitmproxy's loop-wide settings (its exception handler,
eager tasks on Python 3.12) leave the replay's loop alone. Both want the same things:
a port that is taken reported as one line before anything starts, mitmproxy's log kept
off the terminal, its CA where the user can find it, and a shutdown that closes the
listeners and the bot's keep-alive connections instead of leaving them to the loop.

mitmproxy is imported inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pseudowa.proxy.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_CONFDIR = "~/.mitmproxy"
CA_CERT_NAME = "mitmproxy-ca-cert.pem"  # written by mitmproxy into its confdir on first start
START_TIMEOUT_S = 30.0  # creating a CA on first use takes a moment; this is far more

Echo = Callable[[str], None]
# mitmproxy's Master, addons and options: much of their API is untyped, so they are
# handled as Any here rather than with a type: ignore on every call.
Master = Any


def ca_cert_path(confdir: str | None) -> Path:
    """Where mitmproxy keeps the CA certificate a proxy client must trust."""
    return Path(os.path.expanduser(confdir or DEFAULT_CONFDIR)).absolute() / CA_CERT_NAME


def ensure_ca(confdir: str | None) -> Path:
    """mitmproxy's CA certificate, created as mitmproxy does on its first start if missing.

    A bot reads its trust store (SSL_CERT_FILE) when it starts, which in a replay is
    before pseudowa's proxy runs: on a fresh machine the CA must be made first.
    """
    from mitmproxy import certs
    from mitmproxy.options import CONF_BASENAME
    from mitmproxy.options import Options

    path = ca_cert_path(confdir)
    if not path.is_file():
        try:
            certs.CertStore.from_store(path.parent, CONF_BASENAME, Options().key_size)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot create mitmproxy's CA in {path.parent}: {one_line(e)}") from e
    return path


def show_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def bind_failure(error: BaseException | None) -> str:
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return one_line(error) if error is not None else "the server did not start"


def cannot_listen(host: str, port: int, label: str, why: str) -> str:
    """The one line for a listener that could not bind, naming the option to change."""
    return (f"cannot listen on {show_host(host)}:{port} for the {label} listener: {why} "
            f"(choose another with --{label}-port)")


def check_free(host: str, port: int, label: str) -> None:
    """Fail early, before anything is started or written, when a listener's port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # asyncio's servers set SO_REUSEADDR too: a port in TIME_WAIT is usable, a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(cannot_listen(host, port, label, e.strerror or str(e))) from e


class LogRelay(logging.Handler):
    """mitmproxy's warnings and errors, kept during start-up and then shown as `! ...` lines.

    Installed on the root logger in place of mitmproxy's terminal log and error check,
    so that nothing else reaches the terminal (and Python's last-resort handler stays quiet).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []
        self.echo: Callable[[str], None] | None = None

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


def drop_error_check(master: Master) -> None:
    """DumpMaster's ErrorCheck prints to stderr and sys.exit()s on a start-up error; we report
    start-up errors ourselves, as one line."""
    check = master.addons.get("errorcheck")
    if check is not None:
        master.addons.remove(check)
        check.finish()  # uninstalls its log handler


def bound_ports(master: Master, specs: Iterable[str]) -> dict[str, int | BaseException | None]:
    """For each mode spec: the port its server listens on, or why it does not (call once
    mitmproxy is `running`)."""
    proxyserver = master.addons.get("proxyserver")
    by_spec = {inst.mode.full_spec: inst for inst in proxyserver.servers}
    out: dict[str, int | BaseException | None] = {}
    for spec in specs:
        inst = by_spec.get(spec)
        addrs = inst.listen_addrs if inst is not None and inst.is_running else ()
        out[spec] = int(addrs[0][1]) if addrs else getattr(inst, "last_exception", None)
    return out


async def close_listeners(master: Master) -> None:
    """Stop accepting connections (mitmproxy leaves its listening sockets open when it stops)."""
    proxyserver = master.addons.get("proxyserver")
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
    proxyserver = master.addons.get("proxyserver")
    if proxyserver is None:
        return
    for handler in list(proxyserver.connections.values()):
        io = handler.transports.get(handler.client)
        task = getattr(io, "handler", None)
        if task is not None and not task.done():
            task.cancel("pseudowa is stopping")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while proxyserver.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)


# -- a proxy in a thread of its own -----------------------------------------------------------


class _Started:
    """Our addon next to the caller's: learns the bound port once mitmproxy runs."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.started = asyncio.Event()  # set by `running` (or `done`, if it never ran)
        self.port: int | None = None
        self.error: BaseException | None = None
        self.done_called = False

    def running(self) -> None:
        from mitmproxy import ctx

        master: Master = ctx.master
        found = bound_ports(master, [self.spec])[self.spec]
        if isinstance(found, int):
            self.port = found
        else:
            self.error = found or OSError(0, "the server did not start")
            master.shutdown()
        self.started.set()

    def done(self) -> None:
        self.done_called = True
        self.started.set()


def _settle(future: concurrent.futures.Future[Any], result: Any = None, *,
            error: BaseException | None = None) -> bool:
    """Resolve a future the other thread may have cancelled meanwhile; whether it took."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        return False
    return True


class ProxyThread:
    """One mitmproxy listener (`regular`, by default) with the caller's addons, run by
    DumpMaster on an event loop in a daemon thread.

    `await start()` returns once it listens (or raises `UserError` with one line: port
    taken, bad option, CA not writable); `await stop()` closes the listener and the
    connections left open, then waits for mitmproxy to finish. Warnings mitmproxy logs
    while it runs go to `on_line` as `! ...` lines, from its thread.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        addons: Iterable[Any],
        options: Mapping[str, Any],
        confdir: str | None = None,
        mode: str = "regular",
        label: str = "proxy",
        ssl_insecure: bool = False,
        on_line: Echo | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.label = label
        self.spec = f"{mode}@{host}:{port}"  # mitmproxy splits at the last ":": IPv6 goes in bare
        self.addons = list(addons)
        self.options = dict(options)
        self.confdir = confdir
        self.ssl_insecure = ssl_insecure
        self.on_line = on_line
        self.ca_cert_path = ca_cert_path(confdir)
        self.bound_port: int | None = None
        self._relay = LogRelay()
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{show_host(self.host)}:{self.bound_port or self.port}"

    async def start(self) -> str:
        """Start listening; the proxy's URL."""
        if self._thread is not None:
            raise RuntimeError("ProxyThread.start() called twice")
        self._relay.install()
        self._thread = threading.Thread(
            target=self._main, name=f"pseudowa {self.label}: mitmproxy", daemon=True
        )
        self._thread.start()
        try:
            self.bound_port = await asyncio.wait_for(
                asyncio.wrap_future(self._ready), START_TIMEOUT_S
            )
        except BaseException:
            await self.stop()
            raise
        for warning in self._relay.records:  # e.g. an expired CA
            self._echo(f"! {warning}")
        self._relay.echo = self._echo  # from now on, mitmproxy's warnings are shown as they come
        return self.url

    async def stop(self) -> None:
        """Stop listening, close what is open, wait for mitmproxy; safe to call twice."""
        if self._thread is None:
            return
        self._relay.echo = None
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not self._finished.done():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # its loop closed meanwhile: it has finished
                pass
        try:
            await asyncio.wrap_future(self._finished)
        finally:
            self._relay.uninstall()

    def _echo(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported through the futures; the thread just ends
            if not _settle(self._ready, error=e):
                logger.error("mitmproxy stopped with an error: %s", one_line(e))
        finally:
            _settle(self._ready, error=UserError(
                f"mitmproxy stopped before the {self.label} listener started"))
            _settle(self._finished, None)

    async def _serve(self) -> None:
        from mitmproxy import exceptions
        from mitmproxy.options import Options
        from mitmproxy.tools.dump import DumpMaster

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        opts: Any = Options()
        master: Master = DumpMaster(opts, with_termlog=False, with_dumper=False)
        started = _Started(self.spec)
        try:
            drop_error_check(master)
            try:
                # Setting confdir makes the TLS addon load its CA now (creating it on first
                # use). Lazy connections: nothing reaches a server before the addons saw
                # the request (a redirected host is never contacted).
                opts.update(
                    confdir=self.confdir or DEFAULT_CONFDIR,
                    mode=[self.spec],
                    connection_strategy="lazy",
                    ssl_insecure=self.ssl_insecure,
                )
                if not self.ca_cert_path.is_file():
                    records = self._relay.records
                    why = records[-1] if records else "no reason given"
                    raise UserError(f"mitmproxy could not create its CA certificate "
                                    f"{self.ca_cert_path}: {why}")
                master.addons.add(*self.addons, started)
                opts.update(**self.options)
            except exceptions.OptionsError as e:
                raise UserError(one_line(e)) from e

            run = asyncio.get_running_loop().create_task(master.run())
            stopper = asyncio.get_running_loop().create_task(self._stop_when_asked(master))
            try:
                waiter = asyncio.get_running_loop().create_task(started.started.wait())
                try:
                    await asyncio.wait([run, waiter], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if started.port is not None and not started.done_called and not run.done():
                    _settle(self._ready, started.port)
                await run
            finally:
                stopper.cancel()
                if not run.done():
                    master.shutdown()
                    await asyncio.shield(run)
                await close_listeners(master)
                await close_connections(master)
        finally:
            if not started.done_called:
                # mitmproxy never ran (bad option, stopped during start-up): addons get `done`.
                try:
                    await master.done()
                except Exception:
                    logger.exception("mitmproxy shutdown failed")
        if not self._ready.done():
            why = bind_failure(started.error) if started.error is not None else (
                "mitmproxy stopped during start-up")
            _settle(self._ready, error=UserError(cannot_listen(self.host, self.port, self.label, why)))

    async def _stop_when_asked(self, master: Master) -> None:
        assert self._stop is not None
        await self._stop.wait()
        await close_listeners(master)
        await close_connections(master)
        master.shutdown()
