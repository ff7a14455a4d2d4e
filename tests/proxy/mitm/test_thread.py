"""ProxyThread: mitmproxy on a loop of its own, as `replay --proxy-port` runs it."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from mitmproxy import http

from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.thread import ProxyThread

logger = logging.getLogger(__name__)


class Answer:
    """Answers every request itself, noting the thread it ran on; warns when asked to."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.done_calls = 0

    def configure(self, updated: set[str]) -> None:
        if "pseudowa_test_warn" in updated:
            logger.warning("a warning during start-up")

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option("pseudowa_test_warn", bool, False, "Warn while configured.")

    def request(self, flow: http.HTTPFlow) -> None:
        self.threads.add(threading.current_thread().name)
        if flow.request.path == "/warn":
            logger.warning("a warning while serving")
        flow.response = http.Response.make(200, b"answered", {"content-type": "text/plain"})

    def done(self) -> None:
        self.done_calls += 1


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def _wait_for(lines: list[str], line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in lines:
        assert time.monotonic() < deadline, lines
        await asyncio.sleep(0.02)


async def test_start_serve_stop(tmp_path: Path) -> None:
    addon = Answer()
    lines: list[str] = []
    proxy = ProxyThread(
        host="127.0.0.1",
        port=0,
        addons=[addon],
        options={},
        confdir=str(tmp_path / "mitm"),
        on_line=lines.append,
    )
    assert proxy.url == "http://127.0.0.1:0"  # before start: the port asked for
    assert proxy.ca_cert_path == tmp_path / "mitm" / "mitmproxy-ca-cert.pem"
    handler = asyncio.get_running_loop().get_exception_handler()
    url = await proxy.start()
    try:
        assert proxy.bound_port and url == proxy.url == f"http://127.0.0.1:{proxy.bound_port}"
        assert proxy.ca_cert_path.is_file()
        # mitmproxy's loop-wide settings stay on its own loop.
        assert asyncio.get_running_loop().get_exception_handler() is handler
        async with aiohttp.ClientSession(proxy=url) as session:
            async with session.get("http://bot.invalid/hello") as resp:
                assert resp.status == 200 and await resp.text() == "answered"
    finally:
        await proxy.stop()
        await proxy.stop()  # twice is harmless
    assert addon.threads == {"pseudowa proxy: mitmproxy"}
    assert addon.done_calls == 1
    assert lines == []
    assert _closed(proxy.bound_port)


async def test_mitmproxys_warnings_go_to_on_line(tmp_path: Path) -> None:
    lines: list[str] = []
    proxy = ProxyThread(
        host="127.0.0.1",
        port=0,
        addons=[Answer()],
        options={"pseudowa_test_warn": True},
        confdir=str(tmp_path),
        on_line=lines.append,
    )
    url = await proxy.start()
    try:
        # The ones from start-up are shown once start() returns, in order.
        assert lines == ["! a warning during start-up"]
        async with aiohttp.ClientSession(proxy=url) as session:
            async with session.get("http://bot.invalid/warn") as resp:
                assert resp.status == 200
        await _wait_for(lines, "! a warning while serving")  # from mitmproxy's thread
    finally:
        await proxy.stop()
    assert lines == ["! a warning during start-up", "! a warning while serving"]


async def test_a_port_taken_is_one_line(tmp_path: Path) -> None:
    addon = Answer()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proxy = ProxyThread(
            host="127.0.0.1",
            port=port,
            addons=[addon],
            options={},
            confdir=str(tmp_path),
            label="graph",
        )
        with pytest.raises(UserError) as raised:
            await proxy.start()
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{port} for the graph listener: Address already in use "
        "(choose another with --graph-port)"
    )
    assert addon.done_calls == 1
    await proxy.stop()  # harmless after a failed start


async def test_a_bad_option_is_one_line(tmp_path: Path) -> None:
    proxy = ProxyThread(
        host="127.0.0.1",
        port=0,
        addons=[Answer()],
        options={"block_list": ["bad"]},
        confdir=str(tmp_path),
    )
    with pytest.raises(UserError, match=r"^Cannot parse block_list option bad: [^\n]*$"):
        await proxy.start()


async def test_start_twice_and_stop_before_start(tmp_path: Path) -> None:
    proxy = ProxyThread(host="127.0.0.1", port=0, addons=[], options={}, confdir=str(tmp_path))
    await proxy.stop()  # never started: nothing to do
    await proxy.start()
    try:
        with pytest.raises(RuntimeError, match="called twice"):
            await proxy.start()
    finally:
        await proxy.stop()
