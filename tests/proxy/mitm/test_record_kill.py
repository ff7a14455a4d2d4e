"""`pseudowa record` killed with SIGKILL under load: nothing it acknowledged is lost.

The recorder lets each exchange through only once its own write is committed, so a
client that got its answer may rely on the exchange being in the cassette, even when
the process dies the next instant, without a chance to flush or shut down. Driven as a
user runs it: the recorder is a subprocess with a webhook listener in front of a tiny
bot, 32 clients post webhooks through it at once, and the recorder is killed mid-flight.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pseudowa.proxy.cassette.seeds import ACCOUNT
from pseudowa.proxy.cassette.seeds import USER
from pseudowa.proxy.contract import webhooks as wh
from pseudowa.proxy.testing.ports import free_port
from pseudowa.proxy.testing.ports import wait_port
from pseudowa.proxy.testing.processes import Process
from pseudowa.storage import migrate
from pseudowa.storage.store import CassetteStore

CLI = [sys.executable, "-m", "pseudowa.proxy.cli.main"]
CLIENTS = 32
LOAD_S = 3.0  # how long the clients post before the kill


@pytest.fixture
async def bot_url() -> AsyncIterator[str]:
    """A tiny bot: answers every webhook 200 after a moment's work."""

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.002)
        return web.Response(text="EVENT_RECEIVED")

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/webhook"
    await runner.cleanup()


@dataclass
class Load:
    """What the clients saw: the wamids answered 200, and how many were in flight."""

    acknowledged: list[str] = field(default_factory=list)
    in_flight: int = 0
    failed_before_kill: list[str] = field(default_factory=list)
    killed: bool = False


async def _client(i: int, url: str, load: Load, stop: asyncio.Event) -> None:
    """One connection posting webhooks one after another until `stop` or the kill."""
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        n = 0
        while not stop.is_set():
            wamid = f"wamid.kill-{i}-{n}"
            n += 1
            msg = wh.message("text", USER, wh.text_body(f"client {i} #{n}"), wamid=wamid)
            body = wh.dumps(wh.inbound_webhook(ACCOUNT, msg))
            load.in_flight += 1
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    if response.status == 200:
                        load.acknowledged.append(wamid)
                    elif not load.killed:
                        load.failed_before_kill.append(f"{wamid}: HTTP {response.status}")
            except (aiohttp.ClientError, TimeoutError) as e:
                if not load.killed:
                    load.failed_before_kill.append(f"{wamid}: {e!r}")
                return  # the recorder is gone: nothing more can be acknowledged
            finally:
                load.in_flight -= 1


async def test_kill_9_under_32_connections_keeps_every_acknowledged_exchange(
    tmp_path: Path, bot_url: str
) -> None:
    db_file = tmp_path / "rec.db"
    db = f"sqlite:///{db_file}"
    port = free_port()
    recorder = await Process.start(
        "record",
        [
            *CLI,
            "record",
            "crash",
            "--db",
            db,
            "--source",
            "sandbox",
            "--bot-webhook",
            bot_url,
            "--webhook-port",
            str(port),
            "--graph-port",
            "0",
            "--media-port",
            "0",
            "--no-proxy",
            "--confdir",
            str(tmp_path / "mitmproxy"),
        ],
        cwd=tmp_path,
        echo=False,
    )
    load = Load()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await recorder.wait_for("press Ctrl-C to stop")
        await wait_port(port)
        url = f"http://127.0.0.1:{port}/webhook"
        tasks = [
            asyncio.get_running_loop().create_task(_client(i, url, load, stop))
            for i in range(CLIENTS)
        ]
        await asyncio.sleep(LOAD_S)
        in_flight_at_kill = load.in_flight
        load.killed = True
        recorder.proc.send_signal(signal.SIGKILL)
        assert await recorder.wait(10) == -signal.SIGKILL
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        stop.set()
        await recorder.kill()
        for task in tasks:
            task.cancel()

    assert load.failed_before_kill == [], load.failed_before_kill[:5]
    assert in_flight_at_kill >= CLIENTS // 2, in_flight_at_kill  # killed under load
    assert len(load.acknowledged) >= CLIENTS, len(load.acknowledged)
    print(f"{len(load.acknowledged)} acknowledged, {in_flight_at_kill} in flight at the kill")

    # The file is whole: SQLite replays its write-ahead log and finds every page sound.
    conn = sqlite3.connect(db_file)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    # Opened as it was left (no migration on open): the schema is at head.
    with CassetteStore.open(db, upgrade=False) as store:
        assert store.schema_revision() == migrate.head()
        recorded = {x.seq: x for x in store.interactions("crash")}
        events = store.events("crash")
    by_wamid = {e.wamid: e for e in events}
    missing = [w for w in load.acknowledged if w not in by_wamid]
    assert missing == [], f"{len(missing)} acknowledged exchanges lost, e.g. {missing[:3]}"
    for wamid in load.acknowledged:
        exchange = recorded[by_wamid[wamid].interaction_seq]
        assert exchange.response_status == 200
        assert wamid.encode() in exchange.request_body
    # Written seqs are dense: no gap where a half-written batch would be.
    assert sorted(recorded) == list(range(len(recorded)))
