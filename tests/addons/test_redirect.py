"""The Redirect addon: Meta's hosts go to the fake Graph API, everything else passes.

First as mitmproxy tests its own addons (taddons, tflow, tutils), then inside a real
mitmproxy (`ProxyThread`) with a client that verifies mitmproxy's CA, as a bot does.
Nothing here reaches the network: graph.facebook.com never has to resolve.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from mitmproxy import exceptions
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils
from yarl import URL

from pseudowa.addons.redirect import REDIRECTED_FROM
from pseudowa.addons.redirect import Redirect
from pseudowa.proxy.errors import UserError
from pseudowa.proxy.mitm.ca import ensure_ca
from pseudowa.proxy.mitm.thread import ProxyThread

TARGET = "http://127.0.0.1:8080"
DOWNLOAD = "/whatsapp_business/attachments/?mid=1037543291543636&ext=1749416983&hash=ARn_x"


def _flow(url: str, method: str = "GET") -> tflow.HTTPFlow:
    req = tutils.treq(method=method.encode())
    req.url = url
    req.headers["Host"] = url.split("/")[2]  # as a client sends it inside the tunnel
    return tflow.tflow(req=req)


def _redirect(addon: Redirect, url: str, **options: object) -> tflow.HTTPFlow:
    with taddons.context(addon) as tctx:
        tctx.configure(addon, **options)
        flow = _flow(url)
        addon.requestheaders(flow)
        return flow


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.facebook.com/v23.0/106540352242922/messages?fields=id&b=%2F",
        f"https://lookaside.fbsbx.com{DOWNLOAD}",
        "http://graph.facebook.com/v23.0/1037543291543636",
        "https://GRAPH.Facebook.com./v23.0/me",
    ],
)
def test_meta_hosts_go_to_the_target_with_path_and_query(url: str) -> None:
    addon = Redirect()
    flow = _redirect(addon, url, pseudowa_redirect_target=TARGET)
    path = url.split("/", 3)[3]
    assert flow.request.url == f"{TARGET}/{path}"
    assert flow.request.headers["Host"] == "127.0.0.1:8080"
    assert flow.metadata[REDIRECTED_FROM] == url.replace(
        "GRAPH.Facebook.com.", "graph.facebook.com."
    )
    assert addon.redirected == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/api?q=1",
        "https://graph.facebook.com.evil.test/v23.0/me",
        "https://facebook.com/v23.0/me",
        "http://127.0.0.1:8000/webhook",
    ],
)
def test_other_hosts_pass_through_untouched(url: str) -> None:
    addon = Redirect()
    flow = _redirect(addon, url, pseudowa_redirect_target=TARGET)
    assert flow.request.url == url
    assert REDIRECTED_FROM not in flow.metadata
    assert addon.redirected == 0


def test_extra_hosts_are_redirected_too() -> None:
    addon = Redirect()
    flow = _redirect(
        addon,
        "https://graph-video.facebook.com:8443/v23.0/x?y=1",
        pseudowa_redirect_target=TARGET,
        pseudowa_redirect_hosts=["Graph-Video.facebook.com"],
    )
    assert flow.request.url == f"{TARGET}/v23.0/x?y=1"
    # Meta's own hosts stay redirected when others are added.
    assert addon.redirects("graph.facebook.com") and addon.redirects("lookaside.fbsbx.com")


def test_https_target() -> None:
    flow = _redirect(
        Redirect(),
        "https://graph.facebook.com/v23.0/me",
        pseudowa_redirect_target="https://fake.test",
    )
    assert flow.request.url == "https://fake.test/v23.0/me"
    assert flow.request.headers["Host"] == "fake.test"


def test_without_a_target_nothing_is_redirected() -> None:
    addon = Redirect()
    flow = _redirect(addon, "https://graph.facebook.com/v23.0/me")
    assert flow.request.url == "https://graph.facebook.com/v23.0/me"
    assert not addon.redirects("graph.facebook.com")


def test_a_flow_already_answered_is_left_alone() -> None:
    addon = Redirect()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, pseudowa_redirect_target=TARGET)
        flow = tflow.tflow(req=tutils.treq(), resp=True)
        flow.request.url = "https://graph.facebook.com/v23.0/me"
        addon.requestheaders(flow)
    assert flow.request.host == "graph.facebook.com"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"pseudowa_redirect_target": "127.0.0.1:8080"}, "expected http://host:port"),
        ({"pseudowa_redirect_target": "ftp://127.0.0.1:8080"}, "expected http://host:port"),
        ({"pseudowa_redirect_target": "http://127.0.0.1:8080/v23.0"}, "no path"),
        ({"pseudowa_redirect_target": "http://127.0.0.1:99999"}, "invalid port"),
        ({"pseudowa_redirect_hosts": ["graph.facebook.com/v23.0"]}, "not a host name"),
        ({"pseudowa_redirect_hosts": [""]}, "not a host name"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], expected: str) -> None:
    addon = Redirect()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=expected):
            tctx.configure(addon, **options)


# -- inside a real mitmproxy ------------------------------------------------------------------


async def _serve(name: str) -> tuple[web.AppRunner, int, list[str]]:
    """A plain HTTP server answering `<name> <path?query> <Host>`, noting what it saw."""
    seen: list[str] = []

    async def any_path(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(text=f"{name} {request.path_qs} {request.host}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1]), seen


@pytest.fixture
async def servers() -> AsyncIterator[tuple[int, list[str], int, list[str]]]:
    fake, fake_port, fake_seen = await _serve("fake")
    other, other_port, other_seen = await _serve("other")
    try:
        yield fake_port, fake_seen, other_port, other_seen
    finally:
        await fake.cleanup()
        await other.cleanup()


async def test_through_mitmproxy_with_its_ca(
    tmp_path: Path, servers: tuple[int, list[str], int, list[str]]
) -> None:
    fake_port, fake_seen, other_port, other_seen = servers
    lines: list[str] = []
    addon = Redirect()
    proxy = ProxyThread(
        host="127.0.0.1",
        port=0,
        addons=[addon],
        confdir=str(tmp_path / "mitm"),
        options={"pseudowa_redirect_target": f"http://127.0.0.1:{fake_port}"},
        on_line=lines.append,
    )
    proxy_url = await proxy.start()
    try:
        assert proxy.bound_port and proxy_url == f"http://127.0.0.1:{proxy.bound_port}"
        trust = ssl.create_default_context(cafile=str(proxy.ca_cert_path))  # verification on
        async with aiohttp.ClientSession(proxy=proxy_url) as session:
            for url in (
                "https://graph.facebook.com/v23.0/106540352242922/messages?a=1&b=%2F",
                f"https://lookaside.fbsbx.com{DOWNLOAD}",
            ):
                # encoded=True: the client sends the URL as written (%2F stays), so this
                # checks what the proxy forwards, not how the client normalises.
                async with session.get(URL(url, encoded=True), ssl=trust) as resp:
                    assert resp.status == 200
                    path = url.split("/", 3)[3]
                    assert await resp.text() == f"fake /{path} 127.0.0.1:{fake_port}"
            # Another host goes where it was meant to, through the proxy.
            async with session.get(f"http://127.0.0.1:{other_port}/health?x=1") as resp:
                assert await resp.text() == f"other /health?x=1 127.0.0.1:{other_port}"
            # Without mitmproxy's CA, the client refuses the proxy's certificate.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(
                    "https://graph.facebook.com/v23.0/me",
                    ssl=ssl.create_default_context(cafile=str(_other_ca(tmp_path))),
                ):
                    pass
    finally:
        await proxy.stop()
        await proxy.stop()  # twice is harmless
    assert addon.redirected == 2
    assert fake_seen == ["/v23.0/106540352242922/messages?a=1&b=%2F", DOWNLOAD]
    assert other_seen == ["/health?x=1"]
    assert lines == []  # no warnings from mitmproxy
    with socket.socket() as s:  # the listener is closed
        assert s.connect_ex(("127.0.0.1", proxy.bound_port)) != 0


def _other_ca(tmp_path: Path) -> Path:
    """A CA that did not sign mitmproxy's certificates."""
    return ensure_ca(str(tmp_path / "other-ca"))


async def test_port_taken_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proxy = ProxyThread(
            host="127.0.0.1",
            port=port,
            addons=[Redirect()],
            options={},
            confdir=str(tmp_path / "mitm"),
        )
        with pytest.raises(UserError) as raised:
            await proxy.start()
    message = str(raised.value)
    assert message == (
        f"cannot listen on 127.0.0.1:{port} for the proxy listener: "
        "Address already in use (choose another with --proxy-port)"
    )
    await proxy.stop()


async def test_bad_option_is_one_line(tmp_path: Path) -> None:
    proxy = ProxyThread(
        host="127.0.0.1",
        port=0,
        addons=[Redirect()],
        confdir=str(tmp_path / "m"),
        options={"pseudowa_redirect_target": "http://127.0.0.1:8080/x"},
    )
    with pytest.raises(UserError, match="pseudowa_redirect_target: .*no path"):
        await proxy.start()


def test_ensure_ca_creates_it_once(tmp_path: Path) -> None:
    ca = ensure_ca(str(tmp_path / "conf"))
    assert ca == tmp_path / "conf" / "mitmproxy-ca-cert.pem"
    first = ca.read_bytes()
    assert first.startswith(b"-----BEGIN CERTIFICATE-----")
    assert ensure_ca(str(tmp_path / "conf")).read_bytes() == first  # kept, not remade
