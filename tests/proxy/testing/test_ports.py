"""Free ports on 127.0.0.1, and waiting for a server to listen on one."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from pseudowa.proxy.testing.ports import free_port
from pseudowa.proxy.testing.ports import free_ports
from pseudowa.proxy.testing.ports import wait_port


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(ports) == 5
    assert len(set(ports)) == 5
    socks = []
    try:
        for port in ports:
            assert 0 < port <= 65535
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", port))  # raises if the port were held or taken
    finally:
        for s in socks:
            s.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port


def test_free_ports_of_zero_is_empty() -> None:
    assert free_ports(0) == []


async def test_wait_port_returns_once_a_server_listens() -> None:
    accepted = asyncio.Event()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.wait_for(wait_port(port, timeout=5.0), 5.0)
        await asyncio.wait_for(accepted.wait(), 5.0)  # it really connected
    finally:
        server.close()
        await server.wait_closed()


async def test_wait_port_waits_for_a_server_that_starts_late() -> None:
    port = free_port()
    servers: list[asyncio.Server] = []

    async def start_later() -> None:
        await asyncio.sleep(0.2)
        servers.append(await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port))

    task = asyncio.create_task(start_later())
    try:
        await wait_port(port, timeout=5.0)
        assert servers, "wait_port returned before the server listened"
    finally:
        await task
        for server in servers:
            server.close()
            await server.wait_closed()


async def test_wait_port_times_out_when_nothing_listens() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        await wait_port(port, timeout=0.3)
    assert time.monotonic() - started < 3.0
