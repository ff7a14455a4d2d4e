"""The one run sequence for an embedded mitmproxy: real DumpMasters on port 0, a tiny addon."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from mitmproxy import ctx
from mitmproxy import http

from pseudowa.proxy.errors import ConfigError
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.runner import Listener
from pseudowa.proxy.mitm.runner import LogRelay
from pseudowa.proxy.mitm.runner import RunConfig
from pseudowa.proxy.mitm.runner import bind_failure
from pseudowa.proxy.mitm.runner import cannot_listen
from pseudowa.proxy.mitm.runner import check_free
from pseudowa.proxy.mitm.runner import one_line
from pseudowa.proxy.mitm.runner import run
from pseudowa.proxy.mitm.runner import show_host
from pseudowa.proxy.testing.ports import free_port

TIMEOUT_S = 20.0


class Answer:
    """Answers every request itself; with lazy connections no server is ever contacted."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.done_calls = 0

    def request(self, flow: http.HTTPFlow) -> None:
        self.paths.append(flow.request.path)
        flow.response = http.Response.make(
            200, b"answered by the addon", {"content-type": "text/plain"}
        )

    def done(self) -> None:
        self.done_calls += 1


# -- one-line messages ------------------------------------------------------------------------


def test_show_host_brackets_ipv6_only() -> None:
    assert show_host("127.0.0.1") == "127.0.0.1"
    assert show_host("::1") == "[::1]"


def test_one_line_is_the_first_non_blank_line() -> None:
    assert one_line(ValueError("\n  first  \nsecond")) == "first"
    assert one_line(KeyError()) == "KeyError"


def test_bind_failure_in_words() -> None:
    assert bind_failure(OSError(errno.EADDRINUSE, "whatever")) == "Address already in use"
    assert bind_failure(OSError("no errno\nmore")) == "no errno"
    assert bind_failure(None) == "the server did not start"


def test_cannot_listen_names_the_option_to_change() -> None:
    assert cannot_listen("::1", 8093, "proxy", "Address already in use") == (
        "cannot listen on [::1]:8093 for the proxy listener: Address already in use "
        "(choose another with --proxy-port)"
    )


def test_check_free_passes_a_free_port_and_refuses_a_taken_one() -> None:
    check_free("127.0.0.1", free_port(), "graph")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        busy.listen()
        with pytest.raises(UserError) as raised:
            check_free("127.0.0.1", port, "graph")
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{port} for the graph listener: Address already in use "
        "(choose another with --graph-port)"
    )


def test_listener_spec_puts_an_ipv6_host_in_bare() -> None:
    assert Listener("proxy", "127.0.0.1", 8093).spec == "regular@127.0.0.1:8093"
    graph = Listener("graph", "::1", 0, "reverse:https://graph.facebook.com")
    assert graph.spec == "reverse:https://graph.facebook.com@::1:0"


# -- mitmproxy's log --------------------------------------------------------------------------


def test_log_relay_keeps_warnings_then_echoes_them() -> None:
    relay = LogRelay()
    lines: list[str] = []
    log = logging.getLogger("mitmproxy.test-relay")
    relay.install()
    try:
        log.info("not kept: below WARNING")
        log.warning("expired CA\nsecond line")
        relay.echo = lines.append
        try:
            raise OSError("disk full")
        except OSError:
            log.error("cannot write", exc_info=True)
        # Someone's broken log call (handed to the relay alone: other handlers would raise).
        relay.handle(
            logging.LogRecord("x", logging.WARNING, __file__, 1, "bad %s format %s", ("one",), None)
        )
    finally:
        relay.uninstall()
    log.warning("after uninstall")
    assert relay.records == [
        "expired CA",
        "cannot write (OSError: disk full)",
        "bad %s format %s",
    ]
    assert lines == ["! cannot write (OSError: disk full)", "! bad %s format %s"]


# -- the run sequence -------------------------------------------------------------------------


def _start(
    config: RunConfig,
    *,
    unfinished: Callable[[], int] | None = None,
    grace_s: float = 5.0,
    on_serving: Callable[[Mapping[str, int]], None] | None = None,
) -> tuple[asyncio.Task[bool], asyncio.Future[dict[str, int]], asyncio.Event, LogRelay]:
    """run() as a task; a future for its bound ports, its stop event and its relay."""
    ready: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    relay = LogRelay()

    def serving(ports: Mapping[str, int]) -> None:
        if on_serving is not None:
            on_serving(ports)
        ready.set_result(dict(ports))

    task = asyncio.get_running_loop().create_task(
        run(
            config,
            relay=relay,
            on_serving=serving,
            stop=stop,
            unfinished=unfinished,
            grace_s=grace_s,
        )
    )
    return task, ready, stop, relay


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_run_serves_through_the_addons_until_stopped(tmp_path: Path) -> None:
    addon = Answer()
    config = RunConfig(
        listeners=[
            Listener("proxy", "127.0.0.1", 0),
            # Two listeners cannot both ask for port 0 (mitmproxy refuses the same address twice).
            Listener("graph", "127.0.0.1", free_port(), "reverse:http://127.0.0.1:9"),
        ],
        addons=[addon],
        confdir=str(tmp_path / "mitm"),
    )
    task, ready, stop, _ = _start(config)
    try:
        ports = await asyncio.wait_for(asyncio.shield(ready), TIMEOUT_S)
        assert sorted(ports) == ["graph", "proxy"] and all(ports.values())
        async with aiohttp.ClientSession() as session:
            async with session.get(
                "http://bot.invalid/through-proxy", proxy=f"http://127.0.0.1:{ports['proxy']}"
            ) as resp:
                assert resp.status == 200
                assert await resp.text() == "answered by the addon"
            async with session.post(f"http://127.0.0.1:{ports['graph']}/v23.0/me") as resp:
                assert resp.status == 200
        assert (tmp_path / "mitm" / "mitmproxy-ca-cert.pem").is_file()  # made on start
    finally:
        stop.set()
        served = await asyncio.wait_for(task, TIMEOUT_S)
    assert served is True
    assert addon.paths == ["/through-proxy", "/v23.0/me"]
    assert addon.done_calls == 1
    assert _closed(ports["proxy"]) and _closed(ports["graph"])


async def test_bound_ports_leaves_the_addon_chain_once_serving(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def look(_ports: Mapping[str, int]) -> None:
        seen["boundports"] = ctx.master.addons.get("boundports")
        seen["answer"] = ctx.master.addons.get("answer")

    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], [Answer()], confdir=str(tmp_path))
    task, ready, stop, _ = _start(config, on_serving=look)
    try:
        await asyncio.wait_for(asyncio.shield(ready), TIMEOUT_S)
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)
    assert seen["boundports"] is None  # every event of every flow skips it
    assert isinstance(seen["answer"], Answer)


async def test_a_port_taken_is_one_line_after_everything_stopped(tmp_path: Path) -> None:
    addon = Answer()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = RunConfig(
            [Listener("graph", "127.0.0.1", free_port()), Listener("media", "127.0.0.1", port)],
            [addon],
            confdir=str(tmp_path),
        )
        task, ready, _, relay = _start(config)
        with pytest.raises(UserError) as raised:
            await asyncio.wait_for(task, TIMEOUT_S)
    assert str(raised.value) == (
        f"cannot listen on 127.0.0.1:{port} for the media listener: Address already in use "
        "(choose another with --media-port)"
    )
    assert not ready.done()  # never said to be serving
    assert addon.done_calls == 1
    assert relay not in logging.getLogger().handlers


async def test_a_bad_option_is_one_line_and_the_addons_still_get_done(tmp_path: Path) -> None:
    addon = Answer()
    config = RunConfig(
        [Listener("proxy", "127.0.0.1", 0)],
        [addon],
        options={"block_list": ["bad"]},
        confdir=str(tmp_path),
    )
    task, ready, _, _ = _start(config)
    with pytest.raises(ConfigError, match=r"^Cannot parse block_list option bad: "):
        await asyncio.wait_for(task, TIMEOUT_S)
    assert not ready.done()
    assert addon.done_calls == 1


async def test_a_ca_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], confdir=str(blocker / "conf"))
    task, _, _, _ = _start(config)
    with pytest.raises(UserError) as raised:
        await asyncio.wait_for(task, TIMEOUT_S)
    message = str(raised.value)
    assert message.startswith(
        "mitmproxy could not create its CA certificate "
        f"{blocker / 'conf' / 'mitmproxy-ca-cert.pem'}: "
    )
    assert "Not a directory" in message and "\n" not in message


async def test_stopped_before_serving_returns_false(tmp_path: Path) -> None:
    addon = Answer()
    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], [addon], confdir=str(tmp_path))
    task, ready, stop, _ = _start(config)
    stop.set()  # before mitmproxy brought its servers up
    assert await asyncio.wait_for(task, TIMEOUT_S) is False
    assert not ready.done()
    assert addon.done_calls == 1  # mitmproxy never ran, but the addons are told


async def test_stop_gives_unfinished_exchanges_their_grace(tmp_path: Path) -> None:
    left = [3]

    def unfinished() -> int:  # one exchange finishes per look
        left[0] = max(0, left[0] - 1)
        return left[0]

    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], [Answer()], confdir=str(tmp_path))
    task, ready, stop, _ = _start(config, unfinished=unfinished, grace_s=10.0)
    await asyncio.wait_for(asyncio.shield(ready), TIMEOUT_S)
    stop.set()
    assert await asyncio.wait_for(task, TIMEOUT_S) is True
    assert left == [0]  # it waited until nothing was left, not the whole grace


async def test_stop_waits_no_longer_than_the_grace(tmp_path: Path) -> None:
    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], [Answer()], confdir=str(tmp_path))
    task, ready, stop, _ = _start(config, unfinished=lambda: 1, grace_s=0.3)
    await asyncio.wait_for(asyncio.shield(ready), TIMEOUT_S)
    stopped = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(task, TIMEOUT_S) is True
    assert 0.3 <= time.monotonic() - stopped < 5.0


async def test_a_failing_on_serving_still_stops_mitmproxy(tmp_path: Path) -> None:
    addon = Answer()
    ports: list[int] = []

    def fail(bound: Mapping[str, int]) -> None:
        ports.append(bound["proxy"])
        raise RuntimeError("the caller's banner failed")

    config = RunConfig([Listener("proxy", "127.0.0.1", 0)], [addon], confdir=str(tmp_path))
    task, _, _, _ = _start(config, on_serving=fail)
    with pytest.raises(RuntimeError, match="banner failed"):
        await asyncio.wait_for(task, TIMEOUT_S)
    assert addon.done_calls == 1
    assert _closed(ports[0])
