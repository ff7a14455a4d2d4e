"""README's proxy instructions, tried for real: each runtime's HTTP client reaches the fake
Graph API through `--proxy-port` while calling https://graph.facebook.com, trusting
mitmproxy's CA, with nothing but the environment (or the one line the README names).

One sandbox with its redirecting proxy serves the whole module; every client runs as its
own process, the way a bot would, with a clean environment. A runtime or library this
machine lacks is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

from pseudowa.proxy.sandbox.config import SandboxConfig
from pseudowa.proxy.sandbox.sandbox import Sandbox

# Redirected by the proxy but never resolvable (RFC 6761): a client that ignores the proxy
# fails to look it up instead of reaching anything real.
UNRESOLVABLE = "graph.pseudowa.test"
TOKEN = SandboxConfig().access_token
PHONE_ID = SandboxConfig().phone_number_id
NODE_PACKAGES = ("undici@6", "https-proxy-agent@7", "global-agent@3")
# Node packages are installed once per machine, outside the repository.
NODE_DIR = Path(tempfile.gettempdir()) / "pseudowa-test-node-clients"


@dataclass
class Proxied:
    """The running sandbox as a bot's environment sees it."""

    sandbox: Sandbox
    proxy_url: str
    ca: str

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: only the variables the README tells a user to set."""
        keep = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(extra)
        return env

    def run(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
        """Run one client; its stdout (a failing client fails the test with its stderr)."""
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{done.stderr}"
        return done.stdout

    def assert_reached(self, stdout: str, text: str) -> None:
        """The client got the fake's answer and the fake saw the send."""
        answer = json.loads(stdout.strip().splitlines()[-1])
        assert answer["messages"][0]["id"].startswith("wamid."), answer
        bodies = [r.send.body.get("text", {}).get("body") for r in self.sandbox.sends]
        assert text in bodies, bodies


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    confdir = tmp_path_factory.mktemp("mitmproxy")
    config = SandboxConfig(proxy_port=0, confdir=str(confdir), redirect_hosts=(UNRESOLVABLE,))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sandbox = Sandbox(config)
    asyncio.run_coroutine_threadsafe(sandbox.start(), loop).result(60)
    try:
        assert sandbox.proxy_url is not None
        yield Proxied(sandbox, sandbox.proxy_url, str(confdir / "mitmproxy-ca-cert.pem"))
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _send(text: str) -> tuple[str, str]:
    """The URL and JSON body of a text send, as a bot makes it."""
    url = f"https://graph.facebook.com/v21.0/{PHONE_ID}/messages"
    body = {"messaging_product": "whatsapp", "to": "16505551234", "type": "text"}
    return url, json.dumps({**body, "text": {"body": text}})


def _unique(client: str) -> str:
    return f"hello from {client} {uuid.uuid4().hex[:8]}"


# -- Python ----------------------------------------------------------------------------------

PY_CLIENTS = {
    "urllib": """
import json, os, sys, urllib.request
req = urllib.request.Request(URL, data=BODY.encode(), method="POST", headers=HEADERS)
print(urllib.request.urlopen(req, timeout=20).read().decode())
""",
    "requests": """
import requests
print(requests.post(URL, data=BODY, headers=HEADERS, timeout=20).text)
""",
    "httpx": """
import httpx
print(httpx.post(URL, content=BODY, headers=HEADERS, timeout=20).text)
""",
    "aiohttp": """
import asyncio, aiohttp
async def main():
    async with aiohttp.ClientSession(trust_env=True) as session:  # reads HTTPS_PROXY
        async with session.post(URL, data=BODY, headers=HEADERS) as resp:
            print(await resp.text())
asyncio.run(main())
""",
}


@pytest.mark.parametrize("client", sorted(PY_CLIENTS))
def test_python_clients_use_https_proxy_and_ssl_cert_file(proxied: Proxied, client: str) -> None:
    if client != "urllib" and find_spec(client) is None:
        pytest.skip(f"{client} is not installed in this environment")
    text = _unique(f"python {client}")
    url, body = _send(text)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    script = f"URL = {url!r}\nBODY = {body!r}\nHEADERS = {headers!r}\n" + PY_CLIENTS[client]
    # requests bundles certifi and reads its own variable; the others honour OpenSSL's.
    ca_variable = "REQUESTS_CA_BUNDLE" if client == "requests" else "SSL_CERT_FILE"
    env = proxied.env(HTTPS_PROXY=proxied.proxy_url, **{ca_variable: proxied.ca})
    proxied.assert_reached(proxied.run([sys.executable, "-c", script], env), text)


def test_aiohttp_ignores_https_proxy_without_trust_env(proxied: Proxied) -> None:
    script = (
        """
import asyncio, aiohttp
async def main():
    async with aiohttp.ClientSession() as session:
        try:
            await session.get("https://%s/v21.0/me")
        except aiohttp.ClientError as e:
            print(type(e).__name__)
asyncio.run(main())
"""
        % UNRESOLVABLE
    )
    env = proxied.env(HTTPS_PROXY=proxied.proxy_url, SSL_CERT_FILE=proxied.ca)
    out = proxied.run([sys.executable, "-c", script], env)
    assert out.startswith("ClientConnector"), out  # it looked the host up itself: no proxy


# -- Node ------------------------------------------------------------------------------------


def _node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    found = re.match(r"v(\d+)\.", version.stdout)
    return int(found.group(1)) if found else None


NODE_MAJOR = _node_major()
needs_node = pytest.mark.skipif(NODE_MAJOR is None, reason="node is not installed")


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """undici, https-proxy-agent and global-agent from the npm registry, installed once."""
    if (NODE_DIR / "node_modules" / "global-agent").is_dir():
        return NODE_DIR
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(NODE_DIR)]
        + list(NODE_PACKAGES),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"npm install failed (offline?): {done.stderr.strip()[-200:]}")
    return NODE_DIR


def _node_script(call: str, text: str) -> str:
    url, body = _send(text)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return (
        f"const URL_ = {json.dumps(url)}, BODY = {json.dumps(body)}, "
        f"HEADERS = {json.dumps(headers)};\n{call}"
    )


HTTPS_REQUEST = """
const req = https.request(URL_, {method: "POST", headers: HEADERS, AGENT}, (res) => {
  let data = ""; res.on("data", (c) => (data += c)); res.on("end", () => console.log(data));
});
req.on("error", (e) => { console.error(e); process.exit(1); });
req.end(BODY);
"""

NODE_CLIENTS = {
    # Global fetch with undici's EnvHttpProxyAgent: reads HTTPS_PROXY and NO_PROXY.
    "fetch+EnvHttpProxyAgent": """
const { setGlobalDispatcher, EnvHttpProxyAgent } = require("undici");
setGlobalDispatcher(new EnvHttpProxyAgent());
fetch(URL_, {method: "POST", headers: HEADERS, body: BODY})
  .then((r) => r.text()).then(console.log, (e) => { console.error(e); process.exit(1); });
""",
    # undici's own fetch with an explicit ProxyAgent.
    "undici.fetch+ProxyAgent": """
const { fetch, ProxyAgent } = require("undici");
const dispatcher = new ProxyAgent(process.env.HTTPS_PROXY);
fetch(URL_, {method: "POST", headers: HEADERS, body: BODY, dispatcher})
  .then((r) => r.text()).then(console.log, (e) => { console.error(e); process.exit(1); });
""",
    # The https module takes an agent per request.
    "https+https-proxy-agent": """
const https = require("https");
const { HttpsProxyAgent } = require("https-proxy-agent");
const agent = new HttpsProxyAgent(process.env.HTTPS_PROXY);
"""
    + HTTPS_REQUEST.replace("AGENT", "agent"),
    # global-agent patches http/https (not fetch) for the whole process: `node -r`.
    "https+global-agent": """
const https = require("https");
"""
    + HTTPS_REQUEST.replace(", AGENT", ""),
}


@needs_node
@pytest.mark.parametrize("client", list(NODE_CLIENTS))
def test_node_clients_reach_the_fake_through_the_proxy(
    proxied: Proxied, node_modules: Path, client: str
) -> None:
    text = _unique(f"node {client}")
    argv = ["node"]
    extra = {}
    if client == "https+global-agent":
        argv += ["-r", "global-agent/bootstrap"]
        extra["GLOBAL_AGENT_HTTPS_PROXY"] = proxied.proxy_url
    argv += ["-e", _node_script(NODE_CLIENTS[client], text)]
    env = proxied.env(HTTPS_PROXY=proxied.proxy_url, NODE_EXTRA_CA_CERTS=proxied.ca, **extra)
    proxied.assert_reached(proxied.run(argv, env, cwd=node_modules), text)


@needs_node
def test_node_global_fetch_ignores_https_proxy(proxied: Proxied) -> None:
    script = f"""
fetch("https://{UNRESOLVABLE}/v21.0/me")
  .then(() => console.log("reached"), (e) => console.log(e.cause && e.cause.code));
"""
    env = proxied.env(HTTPS_PROXY=proxied.proxy_url, NODE_EXTRA_CA_CERTS=proxied.ca)
    out = proxied.run(["node", "-e", script], env)
    assert out.strip() in ("ENOTFOUND", "EAI_AGAIN"), out  # it resolved the host itself


@needs_node
@pytest.mark.skipif(
    NODE_MAJOR is not None and NODE_MAJOR < 24,
    reason=f"NODE_USE_ENV_PROXY needs Node >= 24 (this is Node {NODE_MAJOR})",
)
def test_node_24_global_fetch_follows_node_use_env_proxy(proxied: Proxied) -> None:
    text = _unique("node fetch NODE_USE_ENV_PROXY")
    call = """
fetch(URL_, {method: "POST", headers: HEADERS, body: BODY})
  .then((r) => r.text()).then(console.log, (e) => { console.error(e); process.exit(1); });
"""
    env = proxied.env(
        HTTPS_PROXY=proxied.proxy_url, NODE_EXTRA_CA_CERTS=proxied.ca, NODE_USE_ENV_PROXY="1"
    )
    proxied.assert_reached(proxied.run(["node", "-e", _node_script(call, text)], env), text)


# -- Go and Java -------------------------------------------------------------------------------

GO_MAIN = """package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

func main() {
	req, _ := http.NewRequest("POST", URL, strings.NewReader(BODY))
	req.Header.Set("Authorization", "Bearer TOKEN")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req) // DefaultTransport: ProxyFromEnvironment
	if err != nil {
		panic(err)
	}
	data, _ := io.ReadAll(resp.Body)
	fmt.Println(string(data))
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_go_net_http_uses_https_proxy_and_ssl_cert_file(proxied: Proxied, tmp_path: Path) -> None:
    text = _unique("go net/http")
    url, body = _send(text)
    source = GO_MAIN.replace("URL", json.dumps(url), 1).replace("BODY", json.dumps(body), 1)
    (tmp_path / "main.go").write_text(source.replace("TOKEN", TOKEN))
    env = proxied.env(
        HTTPS_PROXY=proxied.proxy_url,
        SSL_CERT_FILE=proxied.ca,
        GOCACHE=str(tmp_path / "gocache"),
        GO111MODULE="off",
    )
    out = proxied.run(["go", "run", str(tmp_path / "main.go")], env, cwd=tmp_path)
    proxied.assert_reached(out, text)


JAVA_MAIN = """
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Main {
    public static void main(String[] args) throws Exception {
        // The default proxy selector follows -Dhttps.proxyHost/-Dhttps.proxyPort.
        HttpClient client = HttpClient.newHttpClient();
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
            .header("Authorization", "Bearer " + args[2])
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(args[1]))
            .build();
        System.out.println(client.send(request, HttpResponse.BodyHandlers.ofString()).body());
    }
}
"""


@pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("keytool") is None,
    reason="java (with keytool) is not installed",
)
def test_java_http_client_uses_proxy_properties_and_a_trust_store(
    proxied: Proxied, tmp_path: Path
) -> None:
    store = tmp_path / "pseudowa-ca.p12"
    proxied.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "mitmproxy", "-file", proxied.ca]
        + ["-keystore", str(store), "-storetype", "PKCS12", "-storepass", "changeit"],
        proxied.env(),
    )
    (tmp_path / "Main.java").write_text(JAVA_MAIN)
    host, port = proxied.proxy_url.removeprefix("http://").rsplit(":", 1)
    options = (
        f"-Dhttps.proxyHost={host} -Dhttps.proxyPort={port} "
        f"-Djavax.net.ssl.trustStore={store} -Djavax.net.ssl.trustStorePassword=changeit"
    )
    text = _unique("java HttpClient")
    url, body = _send(text)
    # JAVA_TOOL_OPTIONS: every JVM reads it, so the bot's own command line stays as it is.
    env = proxied.env(JAVA_TOOL_OPTIONS=options)
    out = proxied.run(["java", str(tmp_path / "Main.java"), url, body, TOKEN], env)
    proxied.assert_reached(out, text)
