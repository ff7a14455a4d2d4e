"""The fake Graph API on a client's malformed request: Meta's 400, one log line, no traceback.

Each request goes over a raw socket, byte for byte as a broken client would send it, to a
real FakeGraph on a free port; what the sandbox's stderr would show is read from the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from graph_client import CASSETTE
from graph_client import PHONE_ID
from graph_client import TOKEN
from graph_client import Serve
from openapi import validate

from pseudowa.proxy.contract.outbound import NESTING_MAX
from pseudowa.storage.store import CassetteStore

AUTH = f"Bearer {TOKEN}".encode()


def http(
    method: str, path: str, body: bytes = b"", headers: dict[str, bytes] | None = None
) -> bytes:
    """One HTTP/1.1 request; header values are bytes, so they may be anything."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    for name, value in (headers or {}).items():
        head += name.encode() + b": " + value + b"\r\n"
    return head + b"\r\n" + body


async def exchange(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: status, headers, body."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def graph_error(status: int, headers: dict[str, str], body: bytes, code: int = 100) -> Any:
    """The answer is Meta's error envelope with HTTP 400 and `code`."""
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    validate("GraphAPIError", answer)
    assert answer["error"]["code"] == code, answer
    return answer


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing logged with a traceback, nothing at ERROR: at most a one-line warning."""
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
        assert "\n" not in record.getMessage(), record.getMessage()


def multipart(charset: str) -> tuple[bytes, bytes]:
    """An upload form whose `messaging_product` field names `charset`; body, content type."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="messaging_product"\r\n'
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\nwhatsapp\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n"
    )
    return body, b"multipart/form-data; boundary=b"


@pytest.mark.parametrize("with_cassette", [False, True])
async def test_deeply_nested_send_is_a_400(
    serve: Serve,
    sqlite_store: CassetteStore,
    caplog: pytest.LogCaptureFixture,
    with_cassette: bool,
) -> None:
    """~500 levels once crashed the request-shape matching of a cassette with RecursionError."""
    kwargs: dict[str, Any] = {}
    if with_cassette:
        sqlite_store.create_cassette(CASSETTE, phone_number_ids=[PHONE_ID])
        kwargs = {"store": sqlite_store, "cassette": CASSETTE}
    _, base = await serve(**kwargs)
    for depth in (NESTING_MAX + 1, 500, 900):
        nested = "[" * depth + "]" * depth
        body = (
            '{"messaging_product":"whatsapp","to":"16505551234","type":"text",'
            f'"text":{{"body":"hi","extra":{nested}}}}}'
        ).encode()
        answer = graph_error(
            *await exchange(
                base,
                http(
                    "POST",
                    f"/v21.0/{PHONE_ID}/messages",
                    body,
                    {"Authorization": AUTH, "Content-Type": b"application/json"},
                ),
            )
        )
        assert "nests deeper" in answer["error"]["error_data"]["details"]
    no_traceback(caplog)


@pytest.mark.parametrize("charset", ["bogus", "hex", "idna"])
async def test_upload_field_with_unusable_charset_is_a_400(
    serve: Serve, caplog: pytest.LogCaptureFixture, charset: str
) -> None:
    _, base = await serve()
    body, content_type = multipart(charset)
    headers = {"Authorization": AUTH, "Content-Type": content_type}
    answer = graph_error(
        *await exchange(base, http("POST", f"/v21.0/{PHONE_ID}/media", body, headers))
    )
    assert charset in answer["error"]["error_data"]["details"]
    no_traceback(caplog)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
@pytest.mark.parametrize("route", ["messages", "media"])
async def test_body_not_in_its_content_encoding_is_a_400(
    serve: Serve, caplog: pytest.LogCaptureFixture, encoding: str, route: str
) -> None:
    """A body labelled compressed but sent plain: aiohttp cannot decode it while reading."""
    _, base = await serve()
    if route == "media":
        body, content_type = multipart("utf-8")
    else:
        body = b'{"messaging_product":"whatsapp","to":"16505551234","text":{"body":"a long'
        body += b' enough text that the parser hands it to the decoder"}}'
        content_type = b"application/json"
    headers = {
        "Authorization": AUTH,
        "Content-Type": content_type,
        "Content-Encoding": encoding.encode(),
    }
    status, answer_headers, answer = await exchange(
        base, http("POST", f"/v21.0/{PHONE_ID}/{route}", body, headers)
    )
    if answer_headers["content-type"].startswith("text/plain"):
        # aiohttp's parser refused the framing before any handler (Meta's edge does too).
        assert status == 400
    else:
        graph_error(status, answer_headers, answer)
    no_traceback(caplog)


@pytest.mark.parametrize("token", [b"\xff\xfe\xe9", b"caf\xe9", b"\xed\xa0\x80"])
async def test_bearer_token_of_non_utf8_bytes_is_a_401(
    serve: Serve, caplog: pytest.LogCaptureFixture, token: bytes
) -> None:
    _, base = await serve()
    for method, path in (("POST", f"/v21.0/{PHONE_ID}/messages"), ("GET", "/v21.0/123")):
        headers = {"Authorization": b"Bearer " + token, "Content-Type": b"application/json"}
        status, answer_headers, body = await exchange(base, http(method, path, b"{}", headers))
        assert status == 401, body
        answer = json.loads(body)
        validate("GraphAPIError", answer)
        assert answer["error"]["code"] == 190
    no_traceback(caplog)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
async def test_malformed_framing_logs_one_line(
    serve: Serve, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    """aiohttp's own parser answers these with a plain 400 before any handler runs; the
    sandbox's stderr gets one line per request, not a traceback, and it keeps serving."""
    _, base = await serve()
    with caplog.at_level(logging.DEBUG, logger="pseudowa"):
        status, _, _ = await exchange(base, request_bytes)
    assert status == 400
    no_traceback(caplog)
    status, _, _ = await exchange(base, http("GET", "/v21.0/123", headers={"Authorization": AUTH}))
    assert status == 400  # an unknown object, in Meta's envelope: still serving


@pytest.mark.parametrize("route", ["messages", "media"])
async def test_client_gone_mid_body_logs_no_traceback(
    serve: Serve, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    """A bot that dies halfway through its body: nobody to answer, nothing on stderr but
    aiohttp's debug line, and the fake keeps serving."""
    _, base = await serve()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = http(
        "POST",
        f"/v21.0/{PHONE_ID}/{route}",
        b"",
        {"Authorization": AUTH, "Content-Type": b"multipart/form-data; boundary=b"},
    )
    writer.write(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b'{"messaging')
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await asyncio.sleep(0.2)  # the fake notices the lost connection
    no_traceback(caplog)
    status, _, _ = await exchange(base, http("GET", "/v21.0/123", headers={"Authorization": AUTH}))
    assert status == 400
