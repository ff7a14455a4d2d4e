"""mitmproxy in a thread of its own, for `pseudowa replay --proxy-port`.

The replay's event loop runs the fake Graph API and the emitter; mitmproxy changes
loop-wide settings (its exception handler, eager tasks on Python 3.12) while it runs, so
it gets a loop of its own in a daemon thread. The run itself is `runner.run()`, the same
sequence `pseudowa record` uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.ca import ca_cert_path
from pseudowa.proxy.mitm.runner import Echo
from pseudowa.proxy.mitm.runner import Listener
from pseudowa.proxy.mitm.runner import LogRelay
from pseudowa.proxy.mitm.runner import RunConfig
from pseudowa.proxy.mitm.runner import cannot_listen
from pseudowa.proxy.mitm.runner import one_line
from pseudowa.proxy.mitm.runner import run
from pseudowa.proxy.mitm.runner import show_host

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0  # creating a CA on first use takes a moment; this is far more

T = TypeVar("T")


def _settle(
    future: concurrent.futures.Future[T], result: T, *, error: BaseException | None = None
) -> bool:
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
        addons: Iterable[object],
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
        self.listener = Listener(label, host, port, mode)
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
        """The proxy's URL (with the bound port once started)."""
        return f"http://{show_host(self.host)}:{self.bound_port or self.port}"

    async def start(self) -> str:
        """Start listening; the proxy's URL."""
        if self._thread is not None:
            raise RuntimeError("ProxyThread.start() called twice")
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
        await asyncio.wrap_future(self._finished)

    def _echo(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported through the futures; the thread just ends
            if not _settle(self._ready, 0, error=e):
                logger.error("mitmproxy stopped with an error: %s", one_line(e))
        finally:
            stopped = UserError(f"mitmproxy stopped before the {self.label} listener started")
            _settle(self._ready, 0, error=stopped)
            _settle(self._finished, None)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = RunConfig(
            listeners=[self.listener],
            addons=self.addons,
            options=self.options,
            confdir=self.confdir,
            ssl_insecure=self.ssl_insecure,
            name=f"pseudowa {self.label}",
        )

        def serving(ports: Mapping[str, int]) -> None:
            _settle(self._ready, ports[self.label])

        await run(config, relay=self._relay, on_serving=serving, stop=self._stop)
        if not self._ready.done():
            why = "mitmproxy stopped during start-up"
            _settle(
                self._ready,
                0,
                error=UserError(cannot_listen(self.host, self.port, self.label, why)),
            )
