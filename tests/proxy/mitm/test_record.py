"""`pseudowa record`: mitmproxy in-process with the recorder, driven by real processes.

Meta is played by the test: `FakeGraph` (in this process) answers as the Graph API
and media host, the `Emitter` delivers webhooks. The recorder and the example bot run
as subprocesses, as a user runs them; everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import re
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cli.main import cli
from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.record import Listeners
from pseudowa.proxy.mitm.record import RecordOptions
from pseudowa.proxy.mitm.record import record
from pseudowa.proxy.sandbox.deliveries import Delivery
from pseudowa.proxy.sandbox.emitter import Emitter
from pseudowa.proxy.sandbox.emitter import EmitterConfig
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.testing.ports import free_port as _free_port
from pseudowa.proxy.testing.ports import free_ports as _free_ports
from pseudowa.proxy.testing.ports import wait_port as _wait_port
from pseudowa.proxy.testing.processes import Process
from pseudowa.storage.store import CassetteStore

TOKEN = "EAAtest-Access-Token-7c1f"
SECRET = "app-Secret-5d2e"
VT = "verify-Token-9a4b"
MEDIA_ID = "1037543291543636"  # seeds.image_seed's
PHONE_ID = seeds.ACCOUNT.phone_number_id
CLI = [sys.executable, "-m", "pseudowa.proxy.cli.main"]
SUMMARY = re.compile(
    r"recorded (\S+): (\d+) exchanges \((\d+) webhook, (\d+) graph, (\d+) media\), "
    r"(\d+) media bytes"
)


class _Sends:
    """Meta's view of the bot's accepted sends: the fake Graph API's SendListener."""

    def __init__(self) -> None:
        self.sends: list[SendRequest] = []

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        self.sends.append(send)

    def on_mark_read(self, mark: MarkRead) -> None:
        pass


async def _start(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Process:
    """A program under test: quiet, its stderr kept apart (it must stay empty)."""
    return await Process.start("proc", args, env=env, cwd=cwd, echo=False, merge_stderr=False)


async def _start_bot(graph_url: str) -> tuple[Process, str]:
    port = _free_port()
    bot = await _start(
        [sys.executable, "-m", "pseudowa.proxy.examples.example_bot", "--port", str(port)],
        env={
            "WA_GRAPH_URL": graph_url,
            "WA_TOKEN": TOKEN,
            "WA_APP_SECRET": SECRET,
            "WA_VERIFY_TOKEN": VT,
        },
    )
    try:
        await _wait_port(port)
    except BaseException:
        await bot.kill()
        raise
    return bot, f"http://127.0.0.1:{port}/webhook"


def _assert_no_secrets(db_file: Path) -> None:
    """No secret in the store's bytes (WAL and shared memory included)."""
    for path in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
        if path.exists():
            data = path.read_bytes()
            for secret in (TOKEN, SECRET, VT):
                assert secret.encode() not in data, f"{secret!r} found in {path.name}"


# -- 1. the acceptance test: a real image round trip, recorded, then replayed -------------


async def test_record_image_round_trip_then_replay_passes_check(tmp_path: Path) -> None:
    with CassetteStore.open(f"sqlite:///{tmp_path / 'meta.db'}") as meta_store:
        seed = seeds.image_seed(meta_store, "seed")
        image = meta_store.read_media(meta_store.media(seed, MEDIA_ID).sha256)
        bodies = [
            x.request_body
            for x in meta_store.interactions(seed)
            if x.kind == "webhook" and x.method == "POST"
        ]
        wamid = meta_store.events(seed, category="message")[0].wamid
        sent = _Sends()
        meta = FakeGraph(
            GraphConfig(access_token=TOKEN), store=meta_store, cassette=seed, listener=sent
        )
        meta_url = await meta.start("127.0.0.1", 0)

        db_file = tmp_path / "rec.db"
        db = f"sqlite:///{db_file}"
        p1, p2, p3, p4, bot_port = _free_ports(5)
        procs: list[Process] = []
        try:
            started = time.monotonic()
            recorder = await _start(
                [
                    *CLI,
                    "record",
                    "rec",
                    "--db",
                    db,
                    "--source",
                    "sandbox",
                    "--bot-webhook",
                    f"http://127.0.0.1:{bot_port}/webhook",
                    "--graph-upstream",
                    meta_url,
                    "--media-upstream",
                    meta_url,
                    "--webhook-port",
                    str(p1),
                    "--graph-port",
                    str(p2),
                    "--media-port",
                    str(p3),
                    "--proxy-port",
                    str(p4),
                    "--confdir",
                    str(tmp_path / "mitmproxy"),
                    "--app-secret",
                    SECRET,
                    "--access-token",
                    TOKEN,
                    "--verify-token",
                    VT,
                ],
                cwd=tmp_path,
            )
            procs.append(recorder)
            bot = await _start(
                [
                    sys.executable,
                    "-m",
                    "pseudowa.proxy.examples.example_bot",
                    "--port",
                    str(bot_port),
                ],
                env={
                    "WA_GRAPH_URL": f"http://127.0.0.1:{p2}",
                    "WA_TOKEN": TOKEN,
                    "WA_APP_SECRET": SECRET,
                    "WA_VERIFY_TOKEN": VT,
                },
            )
            procs.append(bot)
            await recorder.wait_for("press Ctrl-C to stop")
            for port in (p1, p2, p3, p4, bot_port):
                await _wait_port(port)
            ready = time.monotonic()

            # Meta: the verify handshake, then the image webhook, through the webhook listener.
            emitter = Emitter(
                EmitterConfig(
                    bot_url=f"http://127.0.0.1:{p1}/webhook",
                    app_secret=SECRET,
                    verify_token=VT,
                    speed=0,
                )
            )
            try:
                await emitter.verify()
                emitter.add(Delivery(body=b, label="image") for b in bodies)
                await emitter.wait_idle(0.1)
            finally:
                await emitter.close()
            assert all(o.delivered for o in emitter.outcomes), emitter.outcomes
            assert [s.type for s in sent.sends] == ["text"]
            # The webhook is written once the bot answered it, after its reply: wait for both.
            await recorder.wait_for(r"^\[webhook\] POST /webhook 200 .*message image")
            await recorder.wait_for(rf"^\[graph\] POST /v23.0/{PHONE_ID}/messages 200")
            code = await recorder.stop()
            recorded = time.monotonic()
            assert code == 0, recorder.output + recorder.stderr.decode()
        finally:
            for proc in procs:
                await proc.kill()
            await meta.stop()

    out = recorder.output
    assert f"webhook  http://127.0.0.1:{p1}/webhook -> " in out
    assert f"HTTPS_PROXY=http://127.0.0.1:{p4}" in out
    assert str(tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem") in out
    assert re.search(r"^\[webhook\] GET /webhook 200 \d+ ms \(verify\)$", out, re.M)
    assert re.search(
        rf"^\[webhook\] POST /webhook 200 \d+ ms \(message image {re.escape(wamid)}\)", out, re.M
    )
    assert re.search(rf"^\[graph\] GET /v23.0/{MEDIA_ID} 200 .*image/png", out, re.M)
    assert re.search(
        rf"^\[media\] GET /\S+ 200 \d+ ms \({len(image)} B image/png, sha256 match\)$", out, re.M
    )
    summary = SUMMARY.search(out)
    assert summary is not None, out
    name, total, webhook, graph, media, media_bytes = summary.groups()
    assert name == "rec"
    assert int(webhook) >= 2 and int(graph) >= 2 and int(media) == 1
    assert int(media_bytes) == len(image)
    assert recorder.stderr == b"", recorder.stderr.decode()

    with CassetteStore.open(db) as store:
        info = store.get_cassette("rec")
        assert info.source == "sandbox" and info.interaction_count == int(total)
        assert PHONE_ID in info.phone_number_ids and info.graph_api_version == "v23.0"
        [event] = store.events("rec", category="message")
        assert (event.type, event.wamid, event.media_id) == ("image", wamid, MEDIA_ID)
        link = store.media("rec", MEDIA_ID)
        assert link.sha256 == hashlib.sha256(image).hexdigest() and link.size == len(image)
        assert store.read_media(link.sha256) == image
        exchanges = list(store.interactions("rec"))
        [send] = [x for x in exchanges if x.kind == "graph" and x.method == "POST"]
        assert send.url.endswith(f"/v23.0/{PHONE_ID}/messages") and send.response_status == 200
        reply = json.loads(send.request_body)
        assert reply["context"]["message_id"] == wamid
        assert reply["text"]["body"] == f"got your image ({len(image)} bytes, sha256 ok)"
        assert all(k.lower() != "authorization" for x in exchanges for k, _ in x.request_headers)
    _assert_no_secrets(db_file)

    # The recording replays against a fresh bot, and the check passes.
    graph_port = _free_port()
    bot, bot_url = await _start_bot(f"http://127.0.0.1:{graph_port}")
    procs = [bot]
    try:
        replay = await _start(
            [
                *CLI,
                "replay",
                "rec",
                "--db",
                db,
                "--bot",
                bot_url,
                "--check",
                "--speed",
                "0",
                "--quiet",
                "0.3",
                "--graph-port",
                str(graph_port),
                "--no-journal",
                "--access-token",
                TOKEN,
                "--app-secret",
                SECRET,
                "--verify-token",
                VT,
            ]
        )
        procs.append(replay)
        code = await replay.wait(timeout=30)
    finally:
        for proc in procs:
            await proc.kill()
    assert code == 0, replay.output + replay.stderr.decode()
    assert "check: OK" in replay.output
    _assert_no_secrets(db_file)
    print(
        f"\nrecorder ready in {ready - started:.2f} s, round trip + stop "
        f"{recorded - ready:.2f} s, replay {time.monotonic() - recorded:.2f} s"
    )


# -- 2. a bot using HTTPS_PROXY and mitmproxy's CA ---------------------------------------


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "upstream.crt", tmp_path / "upstream.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture
async def tls_graph(tmp_path: Path) -> AsyncIterator[tuple[FakeGraph, int]]:
    """The fake Graph API served over TLS with a self-signed certificate."""
    graph = FakeGraph(GraphConfig(access_token=TOKEN))
    runner = web.AppRunner(graph.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    await site.start()
    try:
        yield graph, int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def test_https_proxy_with_mitmproxy_ca(
    tmp_path: Path, tls_graph: tuple[FakeGraph, int]
) -> None:
    graph, tls_port = tls_graph
    sent = _Sends()
    graph.listener = sent
    confdir = tmp_path / "mitmproxy"
    db = f"sqlite:///{tmp_path / 'rec.db'}"
    recorder = await _start(
        [
            *CLI,
            "record",
            "tls",
            "--db",
            db,
            "--graph-upstream",
            f"https://127.0.0.1:{tls_port}",
            "--ssl-insecure",
            "--confdir",
            str(confdir),
            "--access-token",
            TOKEN,
            "--graph-port",
            "0",
            "--media-port",
            "0",
            "--proxy-port",
            "0",
        ]
    )
    try:
        proxy_url = (await recorder.wait_for(r"^  proxy +(http://127\.0\.0\.1:\d+)")).group(1)
        await recorder.wait_for("press Ctrl-C to stop")
        ca = confdir / "mitmproxy-ca-cert.pem"
        assert ca.is_file()
        client_tls = ssl.create_default_context(cafile=str(ca))  # verification on
        send = {
            "messaging_product": "whatsapp",
            "to": seeds.USER,
            "type": "text",
            "text": {"body": "through the proxy"},
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"https://127.0.0.1:{tls_port}/v23.0/{PHONE_ID}/messages",
                json=send,
                headers={"Authorization": f"Bearer {TOKEN}"},
                proxy=proxy_url,
                ssl=client_tls,
            ) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
        await recorder.wait_for(rf"^\[graph\] POST /v23.0/{PHONE_ID}/messages 200")
        assert await recorder.stop() == 0, recorder.output + recorder.stderr.decode()
    finally:
        await recorder.kill()
    assert recorder.stderr == b"", recorder.stderr.decode()
    assert [s.type for s in sent.sends] == ["text"]
    with CassetteStore.open(db) as store:
        [x] = list(store.interactions("tls"))
    assert x.kind == "graph" and x.method == "POST" and x.response_status == 200
    assert x.url == f"https://127.0.0.1:{tls_port}/v23.0/{PHONE_ID}/messages"
    assert json.loads(x.request_body)["text"]["body"] == "through the proxy"
    assert json.loads(x.response_body)["messages"][0]["id"] == answer["messages"][0]["id"]
    assert all(k.lower() != "authorization" for k, _ in x.request_headers)
    assert TOKEN not in repr(x)
    _assert_no_secrets(tmp_path / "rec.db")


# -- 3. user mistakes: one line, exit 1, nothing touched ------------------------------------


def _record(runner: CliRunner, tmp_path: Path, *args: str) -> str:
    """Run `pseudowa record` in-process; its single error line."""
    result = runner.invoke(
        cli,
        [
            "record",
            "--confdir",
            str(tmp_path / "mitmproxy"),
            "--webhook-port",
            "0",
            "--graph-port",
            "0",
            "--media-port",
            "0",
            "--proxy-port",
            "0",
            *args,
        ],
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_record_help() -> None:
    result = CliRunner().invoke(cli, ["record", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pseudowa record [OPTIONS] NAME" in result.output
    assert "HTTPS_PROXY" in result.output and "callback URL" in result.output


def test_existing_cassette_in_mode_new(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with CassetteStore.open(db) as store:
        store.create_cassette("existing")
    line = _record(CliRunner(), tmp_path, "existing", "--db", db)
    assert "existing" in line and "exists" in line and "--mode append" in line
    with CassetteStore.open(db) as store:
        assert store.get_cassette("existing").interaction_count == 0


def test_port_in_use(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _record(
            CliRunner(), tmp_path, "x", "--db", db, "--no-proxy", "--graph-port", str(port)
        )
    assert f"127.0.0.1:{port}" in line and "graph listener" in line and "--graph-port" in line
    # Refused before the store was touched: no cassette left behind to block a retry.
    assert not (tmp_path / "store.db").exists()


def test_text_file_as_db_is_left_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my precious notes\n" * 100)
    before = notes.read_bytes()
    line = _record(CliRunner(), tmp_path, "x", "--db", f"sqlite:///{notes}")
    assert "not a SQLite database" in line
    assert notes.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--graph-upstream", "https://graph.facebook.com/v23.0"], "no path"),
        (["--bot-webhook", "ftp://bot/webhook"], "http:// or https://"),
        (["--graph-port", "9999", "--media-port", "9999"], "cannot share port 9999"),
    ],
)
def test_bad_listener_options(tmp_path: Path, args: list[str], expected: str) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(
        cli, ["record", "x", "--db", db, "--confdir", str(tmp_path), "--proxy-port", "0", *args]
    )
    assert result.exit_code == 1 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_mode_new_onto_an_existing_cassette_creates_no_ca(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with CassetteStore.open(db) as store:
        seeds.image_seed(store, "taken")
    confdir = tmp_path / "mitmproxy"
    result = CliRunner().invoke(
        cli,
        ["record", "taken", "--db", db, "--confdir", str(confdir)]
        + ["--graph-port", "0", "--media-port", "0", "--proxy-port", "0"],
    )
    assert result.exit_code == 1, result.output
    assert result.output == "Error: cassette taken exists; use --mode append or overwrite\n"
    assert not confdir.exists()  # no CA was made for a command that was refused
    with CassetteStore.open(db) as store:
        assert store.get_cassette("taken").interaction_count == 1


async def test_port_taken_between_check_and_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mitmproxy's own bind failure (a race with another program) is one UserError too."""
    import pseudowa.proxy.mitm.record as record_module

    monkeypatch.setattr(record_module, "check_free", lambda *args: None)
    lines: list[str] = []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        options = RecordOptions(
            "raced",
            db=f"sqlite:///{tmp_path / 'rec.db'}",
            media_port=port,
            graph_port=0,
            regular_proxy=False,
            confdir=str(tmp_path / "mitmproxy"),
        )
        with pytest.raises(
            UserError,
            match=rf"^cannot listen on 127.0.0.1:{port} for the media "
            r"listener: Address already in use",
        ):
            await asyncio.wait_for(record(options, on_line=lines.append, stop=asyncio.Event()), 20)
    assert not any("press Ctrl-C" in line for line in lines), lines
    # The cassette created for the session is gone again: the same command can be retried.
    with CassetteStore.open(options.db) as store:
        assert not store.exists("raced")
    options.media_port = 0
    stop = asyncio.Event()
    retry = await asyncio.wait_for(
        record(options, on_line=lines.append, on_ready=lambda _: stop.set(), stop=stop), 20
    )
    assert retry.total == 0
    with CassetteStore.open(options.db) as store:
        assert store.exists("raced")  # it served: an empty session is kept


# -- 3b. every upstream on 127.0.0.1: the listener a flow came through tells its kind -------


async def test_listeners_classify_when_all_upstreams_share_a_host(tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path.startswith("/blobs/"):
            return web.Response(body=b"\x89PNG" + bytes(100), content_type="image/png")
        return web.json_response({"ok": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    ports = []
    for _ in range(3):  # the bot, the Graph API, the media host: one app on three ports
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    bot_port, graph_port, media_port = ports
    db = f"sqlite:///{tmp_path / 'rec.db'}"
    options = RecordOptions(
        "local",
        db=db,
        bot_webhook=f"http://127.0.0.1:{bot_port}/webhook",
        webhook_port=0,
        graph_port=0,
        media_port=0,
        regular_proxy=False,
        confdir=str(tmp_path / "mitmproxy"),
        graph_upstream=f"http://127.0.0.1:{graph_port}",
        media_upstream=f"http://127.0.0.1:{media_port}",
        access_token=TOKEN,
    )
    lines: list[str] = []
    ready: asyncio.Future[Listeners] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        record(options, on_line=lines.append, on_ready=ready.set_result, stop=stop)
    )
    try:
        listeners = await asyncio.wait_for(asyncio.shield(ready), 20)
        assert listeners.webhook_url is not None
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            calls = [
                ("POST", listeners.webhook_url, {}),
                ("POST", f"{listeners.graph_url}/v23.0/{PHONE_ID}/messages", auth),
                # No look-up handed this URL out and its path says nothing: only the
                # listener it came through makes it a download.
                ("GET", f"{listeners.media_url}/blobs/opaque-4711", auth),
                # A Meta download path is media even through the Graph listener.
                ("GET", f"{listeners.graph_url}/whatsapp_business/attachments/?mid=9", auth),
            ]
            for method, url, headers in calls:
                async with session.request(method, url, data=b"{}", headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
    finally:
        stop.set()
        summary = await asyncio.wait_for(task, 20)
        await runner.cleanup()
    assert summary.counts == {"webhook": 1, "graph": 1, "media": 2}, lines
    with CassetteStore.open(db) as store:
        kinds = [(x.kind, x.method, x.url.split("/", 3)[3]) for x in store.interactions("local")]
    assert kinds == [
        ("webhook", "POST", "webhook"),
        ("graph", "POST", f"v23.0/{PHONE_ID}/messages"),
        ("media", "GET", "blobs/opaque-4711"),
        ("media", "GET", "whatsapp_business/attachments/?mid=9"),
    ]


async def test_stop_lets_exchanges_in_flight_finish_and_be_recorded(tmp_path: Path) -> None:
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        await asyncio.sleep(0.5)
        return web.json_response({"messages": [{"id": "wamid.slow"}]})

    app = web.Application()
    app.router.add_post("/{tail:.*}", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    db = f"sqlite:///{tmp_path / 'rec.db'}"
    options = RecordOptions(
        "slow",
        db=db,
        graph_upstream=upstream,
        graph_port=0,
        media_port=0,
        regular_proxy=False,
        confdir=str(tmp_path / "mitmproxy"),
    )
    ready: asyncio.Future[Listeners] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    lines: list[str] = []
    task = asyncio.get_running_loop().create_task(
        record(options, on_line=lines.append, on_ready=ready.set_result, stop=stop)
    )
    try:
        listeners = await asyncio.wait_for(asyncio.shield(ready), 20)
        async with aiohttp.ClientSession() as session:
            send = asyncio.ensure_future(
                session.post(f"{listeners.graph_url}/v23.0/{PHONE_ID}/messages", data=b"{}")
            )
            await asyncio.wait_for(arrived.wait(), 10)
            stop.set()  # while the upstream is still answering
            async with await send as resp:
                assert resp.status == 200
                assert (await resp.json())["messages"][0]["id"] == "wamid.slow"
        summary = await asyncio.wait_for(task, 20)
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 20)
        await runner.cleanup()
    assert summary.counts == {"graph": 1}, lines
    with CassetteStore.open(db) as store:
        [x] = list(store.interactions("slow"))
    assert x.response_status == 200 and x.error is None


# -- 4. a failed write stops the recording, loudly ----------------------------------------


async def test_failed_write_stops_recording(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def webhook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    db = f"sqlite:///{tmp_path / 'rec.db'}"
    lines: list[str] = []
    ready: asyncio.Future[Listeners] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    options = RecordOptions(
        "doomed",
        db=db,
        bot_webhook=bot_url,
        webhook_port=0,
        graph_port=0,
        media_port=0,
        regular_proxy=False,
        confdir=str(tmp_path / "mitmproxy"),
        app_secret=SECRET,
    )
    task = asyncio.get_running_loop().create_task(
        record(options, on_line=lines.append, on_ready=ready.set_result, stop=stop)
    )
    try:
        listeners = await asyncio.wait_for(asyncio.shield(ready), 20)
        assert listeners.proxy_url is None and listeners.webhook_url is not None
        assert listeners.webhook_url.endswith("/webhook")
        with CassetteStore.open(db) as other:  # someone deletes the cassette mid-recording
            other.delete_cassette("doomed")
        async with aiohttp.ClientSession() as session:
            try:
                async with session.post(listeners.webhook_url, data=b'{"object":"x"}') as resp:
                    status: int | None = resp.status
            except aiohttp.ClientError:
                status = None  # the recorder kills a flow it cannot record
        assert status != 200
        with pytest.raises(UserError, match=r"^recording stopped: .*doomed"):
            await asyncio.wait_for(task, 20)
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 20)
        await runner.cleanup()
    assert SUMMARY.search("\n".join(lines)), lines
    assert any(line.startswith("! recording stopped") for line in lines), lines
