"""Generated requests against every route of a real fake Graph API: never a 5xx but an
injected fault, every error in Meta's envelope, and the server alive and lean afterwards.

One FakeGraph (SQLite cassette with media, a recorded send, a journal) serves on
127.0.0.1:0 from its own thread and event loop; each example sends raw bytes over a
socket, so headers and framing can be anything a broken client sends. The default
profile ("ci") is quick, for `make test`; `make fuzz` sets PSEUDOWA_FUZZ=long for 20,000+
requests and prints how many were sent and how many got a 5xx.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from graph_client import BLOB
from graph_client import BLOB_MIME
from graph_client import CASSETTE
from graph_client import MEDIA_ID
from graph_client import PHONE_ID
from graph_client import TOKEN
from graph_client import record_send
from graph_client import text
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from openapi import validate

from pseudowa.proxy.contract import media_url
from pseudowa.proxy.contract.outbound import INTERACTIVE_TYPES
from pseudowa.proxy.contract.outbound import SEND_TYPES
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.store import CassetteStore

# Injected faults: some sends fail on purpose, one of them with Meta's HTTP 500.
FAULT_CODES = (131000, 130429)
SECRET = b"fuzz-url-secret"
_COMMON = {
    "deadline": None,
    "database": None,  # nothing written to .hypothesis/ by a test run
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("pseudowa-ci", max_examples=30, **_COMMON)
settings.register_profile("pseudowa-long", max_examples=3000, **_COMMON)
PROFILE = settings.get_profile(
    "pseudowa-long" if os.environ.get("PSEUDOWA_FUZZ") == "long" else "pseudowa-ci"
)
# RSS may grow this much over a run (caches, the journal's queue, SQLite pages); a leak
# per request would pass it within a few thousand requests.
RSS_GROWTH_MAX = 256 << 20


@dataclass
class Answer:
    """An HTTP answer as read off the socket (status 0: the server closed without one)."""

    status: int
    headers: dict[str, str]
    body: bytes


class Server:
    """A FakeGraph served from its own thread; `send` talks to it over a socket."""

    def __init__(self, db: Path) -> None:
        self.store = CassetteStore.open(f"sqlite:///{db}")
        self.store.create_cassette(CASSETTE, phone_number_ids=[PHONE_ID])
        info = self.store.put_media(BLOB, BLOB_MIME)
        self.store.link_media(CASSETTE, MEDIA_ID, info.sha256)
        record_send(self.store, text("recorded"), 200, {"messages": [{"id": "wamid.REC"}]})
        self.store.create_cassette("journal", source="sandbox")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stats: Counter[str] = Counter()
        self.graph, self.journal = self._run(self._start())
        self.port = int(self.base.rsplit(":", 1)[1])

    async def _start(self) -> tuple[FakeGraph, Journal]:
        journal = Journal(self.store, "journal")
        config = GraphConfig(
            access_token=TOKEN, url_secret=SECRET, fail_rate=0.03, fail_codes=FAULT_CODES, seed=7
        )
        graph = FakeGraph(config, store=self.store, cassette=CASSETTE, journal=journal)
        self.base = await graph.start()
        return graph, journal

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self._run(self.graph.stop())
        self._run(self.journal.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.store.close()

    def send(self, raw: bytes, *, framing: bool = False) -> Answer:
        """Send `raw`, read the answer. `framing`: the bytes may be no complete request, so
        the write side is closed when no answer comes soon (the server then sees EOF)."""
        self.stats["requests"] += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            if framing:
                sock.settimeout(0.3)
                try:
                    data = _read_all(sock)
                except TimeoutError:
                    sock.shutdown(socket.SHUT_WR)
                    sock.settimeout(10)
                    data += _read_all(sock)
            else:
                data = _read_all(sock)
        answer = _parse(data)
        if answer.status >= 500:
            self.stats["5xx"] += 1
        return answer


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(data: bytes) -> Answer:
    if not data:
        return Answer(0, {}, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body)


class _Tracebacks(logging.Handler):
    """Counts what would put a traceback or an error on the sandbox's stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.seen.append(
                record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else "")
            )


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz") / "s.db")
    for _ in range(50):  # warm caches before the memory baseline
        srv.send(request("GET", f"/v21.0/{MEDIA_ID}", headers=AUTH))
    srv.stats.clear()
    rss_before = _rss()
    tracebacks = _Tracebacks()
    loggers = [logging.getLogger("pseudowa"), logging.getLogger("aiohttp")]
    for log in loggers:
        log.addHandler(tracebacks)
    try:
        yield srv
    finally:
        for log in loggers:
            log.removeHandler(tracebacks)
    assert_alive(srv)
    growth = _rss() - rss_before
    stats = srv.stats
    print(
        f"\nfuzz: {stats['requests']} requests, {stats['5xx']} 5xx "
        f"({stats['injected']} injected faults), RSS growth {growth >> 20} MiB"
    )
    srv.close()
    assert stats["5xx"] == stats["injected"]
    assert not tracebacks.seen, tracebacks.seen[:5]
    assert growth < RSS_GROWTH_MAX, f"RSS grew {growth >> 20} MiB"


# -- building requests ---------------------------------------------------------------------

AUTH = [(b"Authorization", f"Bearer {TOKEN}".encode())]


def request(
    method: str | bytes,
    target: str | bytes,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """An HTTP/1.1 request closing its connection, with Content-Length for `body`."""
    method_b = method.encode() if isinstance(method, str) else method
    target_b = target.encode() if isinstance(target, str) else target
    head = method_b + b" " + target_b + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    for name, value in headers or []:
        head += name + b": " + value + b"\r\n"
    return head + b"\r\n" + body


def assert_alive(srv: Server) -> None:
    answer = srv.send(request("GET", f"/v21.0/{MEDIA_ID}", headers=AUTH))
    assert answer.status == 200, answer


def check(srv: Server, answer: Answer, *, framing: bool = False, send: bool = False) -> None:
    """What every answer must be: no 5xx but an injected fault, errors in Meta's envelope;
    aiohttp's own plain 400 (or no answer) only where its parser may refuse the bytes."""
    if answer.status == 0:
        assert framing, "the server closed the connection without an answer"
        return
    content_type = answer.headers.get("content-type", "")
    if content_type.startswith("text/plain"):
        # aiohttp's parser refused the request before any handler (framing, Content-Length,
        # an encoding it cannot even start to decode): Meta's edge answers these itself.
        assert answer.status == 400, answer
        return
    if answer.status < 400:
        return
    assert content_type.startswith("application/json"), answer
    body = json.loads(answer.body)
    validate("GraphAPIError", body)
    assert body["error"]["fbtrace_id"] == answer.headers["x-fb-trace-id"]
    if answer.status >= 500:
        assert send and body["error"]["code"] in FAULT_CODES, body
        srv.stats["injected"] += 1


# -- strategies ------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
phones = st.one_of(st.just("16505551234"), st.text("0123456789+ -", max_size=25), json_values)
media_ids = st.one_of(st.just(MEDIA_ID), st.text("0123456789", min_size=1, max_size=20), st.text())


def sub_object(kind: str) -> st.SearchStrategy[Any]:
    """A plausible object for send type `kind`, or anything at all."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "text": st.fixed_dictionaries(
            {"body": st.text(max_size=5000) | json_values},
            optional={"preview_url": st.booleans() | json_values},
        ),
        "location": st.fixed_dictionaries(
            {"latitude": st.floats() | json_values, "longitude": st.floats() | json_values},
            optional={"name": st.text(), "address": st.text()},
        ),
        "contacts": st.lists(st.dictionaries(st.sampled_from(["name", "phones"]), json_values)),
        "template": st.fixed_dictionaries(
            {"name": st.text(max_size=30), "language": st.fixed_dictionaries({"code": st.text()})},
            optional={"components": json_values},
        ),
        "interactive": st.fixed_dictionaries(
            {"type": st.sampled_from(INTERACTIVE_TYPES) | st.text()},
            optional={"body": st.fixed_dictionaries({"text": st.text()}), "action": json_values},
        ),
        "reaction": st.fixed_dictionaries({"message_id": st.text(), "emoji": st.text(max_size=3)}),
    }
    media = st.one_of(
        st.fixed_dictionaries({"id": media_ids}, optional={"caption": st.text(max_size=1100)}),
        st.fixed_dictionaries({"link": st.text()}, optional={"filename": st.text()}),
    )
    return st.one_of(plausible.get(kind, media), json_values)


@st.composite
def send_bodies(draw: st.DrawFn) -> bytes:
    """A messages request body: a send of any type, a read receipt, or not JSON at all."""
    choice = draw(st.sampled_from(["send", "send", "send", "read", "bytes"]))
    if choice == "bytes":
        return draw(st.binary(max_size=300))
    body: dict[str, Any] = {
        "messaging_product": draw(st.sampled_from(["whatsapp"] * 4 + ["sms"]) | json_values)
    }
    if choice == "read":
        body.update(status="read", message_id=draw(st.text(max_size=40)))
        if draw(st.booleans()):
            body["typing_indicator"] = draw(
                st.fixed_dictionaries({"type": st.text()}) | json_values
            )
    else:
        kind = draw(st.sampled_from(SEND_TYPES) | st.text(max_size=10))
        body.update(to=draw(phones), type=kind, **{kind: draw(sub_object(kind))})
        if draw(st.booleans()):
            body["recipient_type"] = draw(st.sampled_from(["individual", "group"]) | json_values)
        if draw(st.booleans()):
            body["context"] = draw(st.fixed_dictionaries({"message_id": st.text()}) | json_values)
        if draw(st.booleans()):
            body["biz_opaque_callback_data"] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
        body.pop(key, None)  # a required field missing
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


auth_headers = st.sampled_from(
    [
        AUTH,
        [],
        [(b"Authorization", b"Bearer wrong")],
        [(b"Authorization", b"Bearer")],
        [(b"Authorization", b"Basic " + TOKEN.encode())],
        [(b"Authorization", b"Bearer \xff\xfe\xe9")],
        [(b"Authorization", b"Bearer \xed\xa0\x80")],
    ]
)
versions = st.sampled_from(["/v21.0", "/v1", "/v99.9", "", "/v21.0.1"])


@st.composite
def encoded(draw: st.DrawFn, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """`body` as sent: plain, or labelled with a Content-Encoding it may or may not be in."""
    how = draw(
        st.sampled_from(["plain"] * 4 + ["gzip", "deflate", "gzip-lie", "br-lie", "deflate-lie"])
    )
    if how == "plain":
        return body, []
    name = how.removesuffix("-lie")
    if how == "gzip":
        body = gzip.compress(body)
    elif how == "deflate":
        body = zlib.compress(body)
    return body, [(b"Content-Encoding", name.encode())]


content_types = st.sampled_from(
    [b"application/json", b"application/json; charset=bogus", b"text/plain", b""]
)


# -- the properties --------------------------------------------------------------------------


@PROFILE
@given(
    body=send_bodies(),
    auth=auth_headers,
    version=versions,
    phone=st.sampled_from([PHONE_ID, PHONE_ID, "999", "abc"]),
    simple=st.booleans(),
    content_type=content_types,
    data=st.data(),
)
def test_sends(
    server: Server,
    body: bytes,
    auth: list[tuple[bytes, bytes]],
    version: str,
    phone: str,
    simple: bool,
    content_type: bytes,
    data: st.DataObject,
) -> None:
    path = "/messages" if simple else f"{version}/{phone}/messages"
    sent, extra = data.draw(encoded(body))
    headers = [*auth, *extra] + ([(b"Content-Type", content_type)] if content_type else [])
    check(server, server.send(request("POST", path, sent, headers)), send=True)


@PROFILE
@given(
    media_id=media_ids,
    auth=auth_headers,
    version=versions,
    phone=st.none() | st.text(max_size=20),
    simple=st.booleans(),
)
def test_media_metadata(
    server: Server,
    media_id: str,
    auth: list[tuple[bytes, bytes]],
    version: str,
    phone: str | None,
    simple: bool,
) -> None:
    path = (
        f"/media/{quote(media_id, safe='')}" if simple else f"{version}/{quote(media_id, safe='')}"
    )
    if phone is not None:
        path += f"?phone_number_id={quote(phone)}"
    answer = server.send(request("GET", path, headers=auth))
    check(server, answer)
    if answer.status == 200:
        meta = json.loads(answer.body)
        assert meta["id"] == media_id and meta["url"].startswith("http")


@PROFILE
@given(
    how=st.sampled_from(["good", "replayed", "expired", "tampered", "wrong-mid", "garbage"]),
    auth=auth_headers,
    edit=st.text(max_size=8),
    ext_shift=st.integers(min_value=-(10**12), max_value=10**12),
    query=st.text(max_size=60),
)
def test_downloads(
    server: Server,
    how: str,
    auth: list[tuple[bytes, bytes]],
    edit: str,
    ext_shift: int,
    query: str,
) -> None:
    now = time.time()
    signed = good = media_url.sign(SECRET, MEDIA_ID, 300, now=now)
    if how == "expired":
        signed = media_url.sign(SECRET, MEDIA_ID, -abs(ext_shift) - 1, now=now)
    elif how == "tampered":
        signed = media_url.SignedMedia(
            signed.mid, signed.ext + ext_shift, signed.hash[: -len(edit) or None] + edit
        )
    elif how == "wrong-mid":
        signed = media_url.SignedMedia(edit or "1", signed.ext, signed.hash)
    target = f"{media_url.DOWNLOAD_PATH}?{signed.query()}"
    if how == "garbage":
        target = f"{media_url.DOWNLOAD_PATH}?{quote(query, safe='=&%')}"
    for _ in range(2 if how == "replayed" else 1):
        answer = server.send(request("GET", target, headers=auth))
        check(server, answer)
        if answer.status == 200:
            assert signed == good and how != "garbage" and answer.body == BLOB
    if signed == good and how != "garbage" and auth == AUTH:
        assert answer.status == 200, answer


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A generated multipart form (fields, files, charsets, broken framing); body, type."""
    boundary = draw(st.text("abcdefXYZ0123456789-_", min_size=1, max_size=30))
    parts: list[bytes] = []
    names = st.sampled_from(["messaging_product", "file", "type", "other"]) | st.text(max_size=10)
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names)
        head = f'Content-Disposition: form-data; name="{name}"'
        if draw(st.booleans()):
            head += f'; filename="{draw(st.text(max_size=10))}"'
        head_b = head.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            mime = draw(st.sampled_from(["text/plain", "image/png", "application/octet-stream"]))
            charset = draw(
                st.sampled_from(["", "utf-8", "bogus", "hex", "idna", "utf-16", "latin-1"])
            )
            head_b += f"\r\nContent-Type: {mime}".encode() + (
                f"; charset={charset}".encode() if charset else b""
            )
        value = draw(st.sampled_from([b"whatsapp", b"image/png"]) | st.binary(max_size=200))
        parts.append(b"--" + boundary.encode() + b"\r\n" + head_b + b"\r\n\r\n" + value + b"\r\n")
    end = draw(
        st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b"", b"--" + boundary.encode()])
    )
    body = b"".join(parts) + end
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}".encode(),
                f"multipart/form-data; boundary={boundary}; charset=bogus".encode(),
                b"multipart/form-data",
                b"multipart/mixed; boundary=" + boundary.encode(),
                b"application/json",
            ]
        )
    )
    return body, content_type


@PROFILE
@given(form=multipart_bodies(), auth=auth_headers, version=versions, data=st.data())
def test_uploads(
    server: Server,
    form: tuple[bytes, bytes],
    auth: list[tuple[bytes, bytes]],
    version: str,
    data: st.DataObject,
) -> None:
    body, content_type = form
    sent, extra = data.draw(encoded(body))
    headers = [*auth, *extra, (b"Content-Type", content_type)]
    answer = server.send(request("POST", f"{version}/{PHONE_ID}/media", sent, headers))
    check(server, answer)
    if answer.status == 200:
        assert json.loads(answer.body)["id"]


@PROFILE
@given(
    media_id=st.text(max_size=20), auth=auth_headers, version=versions, upload_first=st.booleans()
)
def test_deletes(
    server: Server, media_id: str, auth: list[tuple[bytes, bytes]], version: str, upload_first: bool
) -> None:
    if upload_first:
        form = (
            b'--b\r\nContent-Disposition: form-data; name="messaging_product"\r\n\r\nwhatsapp\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            b"Content-Type: image/png\r\n\r\n" + media_id.encode() + b"-png\r\n--b--\r\n"
        )
        headers = [*AUTH, (b"Content-Type", b"multipart/form-data; boundary=b")]
        answer = server.send(request("POST", f"/v21.0/{PHONE_ID}/media", form, headers))
        assert answer.status == 200, answer
        media_id = json.loads(answer.body)["id"]
    if media_id == MEDIA_ID:
        return  # the cassette's media stays: the other properties download it
    answer = server.send(request("DELETE", f"{version}/{quote(media_id, safe='')}", headers=auth))
    check(server, answer)


@PROFILE
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
    | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_", min_size=1, max_size=12),
    path=st.text(max_size=60),
    body=st.binary(max_size=100),
    auth=auth_headers,
)
def test_unknown_paths_and_methods(
    server: Server, method: str, path: str, body: bytes, auth: list[tuple[bytes, bytes]]
) -> None:
    target = "/" + quote(path, safe="/?=&%")
    answer = server.send(request(method, target, body, auth), framing=True)
    if method != "HEAD":
        check(server, answer, framing=True)


valid_request = request(
    "POST",
    f"/v21.0/{PHONE_ID}/messages",
    json.dumps(text("hi")).encode(),
    [*AUTH, (b"Content-Type", b"application/json")],
)


@st.composite
def malformed(draw: st.DrawFn) -> bytes:
    """Bytes near a valid request (bytes replaced, cut, inserted) or no HTTP at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    raw = bytearray(valid_request)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        how = draw(st.sampled_from(["replace", "cut", "insert"]))
        piece = draw(
            st.sampled_from([b"\r\n", b"\n", b"\x00", b":", b" ", b"\xff"]) | st.binary(max_size=4)
        )
        if how == "replace":
            raw[at : at + len(piece)] = piece
        elif how == "cut":
            del raw[at : at + draw(st.integers(1, 40))]
        else:
            raw[at:at] = piece
    return bytes(raw)


@PROFILE
@given(raw=malformed())
def test_raw_malformed_http(server: Server, raw: bytes) -> None:
    check(server, server.send(raw, framing=True), framing=True, send=True)
    assert_alive(server)


NASTY = [
    request(
        "POST",
        f"/v21.0/{PHONE_ID}/messages",
        b'{"messaging_product":"whatsapp","to":"1","text":' + b"[" * 500 + b"]" * 500 + b"}",
        [*AUTH, (b"Content-Type", b"application/json")],
    ),
    request(
        "POST",
        f"/v21.0/{PHONE_ID}/media",
        b'--b\r\nContent-Disposition: form-data; name="messaging_product"\r\n'
        b"Content-Type: text/plain; charset=bogus\r\n\r\nwhatsapp\r\n--b--\r\n",
        [*AUTH, (b"Content-Type", b"multipart/form-data; boundary=b")],
    ),
    request(
        "POST",
        f"/v21.0/{PHONE_ID}/messages",
        b'{"messaging_product":"whatsapp","to":"16505551234","text":{"body":"not gzip at all"}}',
        [*AUTH, (b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip")],
    ),
    request("GET", f"/v21.0/{MEDIA_ID}", headers=[(b"Authorization", b"Bearer \xff\xfe")]),
    b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    request("GET", f"{media_url.DOWNLOAD_PATH}?mid={MEDIA_ID}&ext=1&hash=0", headers=AUTH),
]


def _traced() -> int:
    """Bytes traced now, without pytest's log capture (it keeps every record by design)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(False, "*/logging/*"),
            tracemalloc.Filter(False, "*/_pytest/*"),
            tracemalloc.Filter(False, tracemalloc.__file__),
        ]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_repeated_bad_requests_do_not_grow_memory(server: Server) -> None:
    """Steady state after the generated run: the same bad requests, again and again, leave
    the traced memory flat (a leak per rejected request would show within the loop)."""
    rounds = 300 if os.environ.get("PSEUDOWA_FUZZ") == "long" else 60

    def burst() -> None:
        for _ in range(rounds):
            for raw in NASTY:
                answer = server.send(
                    raw, framing=raw.startswith(b"POST /messages HTTP/1.1\r\nHost: x")
                )
                check(server, answer, framing=True)

    # A journal keeps every exchange of its run by design (the replay check reads them):
    # without one, what is left is the fake's own memory.
    journal, server.graph.journal = server.graph.journal, None
    try:
        burst()  # warm: first-use caches
        tracemalloc.start()
        try:
            before = _traced()
            burst()
            grown = _traced() - before
        finally:
            tracemalloc.stop()
    finally:
        server.graph.journal = journal
    per_request = grown / (rounds * len(NASTY))
    assert per_request < 256, f"{grown} bytes over {rounds * len(NASTY)} requests"
    assert_alive(server)
