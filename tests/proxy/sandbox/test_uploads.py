"""Reading an upload form: fields, the spooled file part, bounds and malformed bodies.

The request is aiohttp's mocked one: `read_upload` reads a body either as bytes read
whole (what the graph did for small bodies) or from the request's stream. Served over
sockets, uploads are tests/proxy/sandbox/test_media.py's.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Request

from pseudowa.proxy.contract.errors import GraphError
from pseudowa.proxy.sandbox import uploads
from pseudowa.proxy.sandbox.uploads import FIELD_MAX
from pseudowa.proxy.sandbox.uploads import SPOOL_MAX
from pseudowa.proxy.sandbox.uploads import Spooled
from pseudowa.proxy.sandbox.uploads import read_upload

BOUNDARY = "pseudowa-boundary"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def field(name: str, value: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
    return head.encode() + value + b"\r\n"


def file_part(data: bytes, mime: str = "image/png") -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="upload.bin"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    )
    return head.encode() + data + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request(body: bytes | None = None, content_type: str | None = None) -> Request:
    """A POST whose body, when given, is its stream (else only its headers are used)."""
    headers = {"Content-Type": content_type or f"multipart/form-data; boundary={BOUNDARY}"}
    if body is None:
        return make_mocked_request("POST", "/1/media", headers=headers)
    # A limit above the body's size: the mocked connection cannot pause reading.
    limit = max(1 << 16, len(body) + 1)
    stream = StreamReader(BaseProtocol(asyncio.get_running_loop()), limit=limit)
    stream.feed_data(body)
    stream.feed_eof()
    return make_mocked_request("POST", "/1/media", headers=headers, payload=stream)


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "streamed"])
async def test_fields_and_the_file_part(whole: bool) -> None:
    body = form(field("messaging_product", b"whatsapp"), file_part(PNG), field("type", b"x/y"))
    got = await (read_upload(request(), body) if whole else read_upload(request(body), None))
    try:
        assert got.fields == {"messaging_product": "whatsapp", "type": "x/y"}
        assert got.file is not None
        assert (got.file.size, got.file.content_type) == (len(PNG), "image/png")
        assert got.file.sha256 == hashlib.sha256(PNG).hexdigest()
        assert got.file.file.read() == PNG
    finally:
        got.close()
    assert got.file.file.closed


async def test_a_form_without_a_file_part() -> None:
    got = await read_upload(request(), form(field("messaging_product", b"whatsapp")))
    assert (got.fields, got.file) == ({"messaging_product": "whatsapp"}, None)
    got.close()  # nothing to close: no error either


async def test_a_big_file_spills_to_disk_and_keeps_its_bytes() -> None:
    data = bytes(range(256)) * (SPOOL_MAX // 256) + b"tail"
    got = await read_upload(request(form(file_part(data, "video/mp4"))), None)
    try:
        assert got.file is not None and got.file.size == len(data) > SPOOL_MAX
        # SpooledTemporaryFile's own flag: past max_size it moved to a real file.
        assert got.file.file._rolled  # type: ignore[attr-defined]
        assert got.file.sha256 == hashlib.sha256(data).hexdigest()
        assert got.file.file.read() == data
    finally:
        got.close()


async def test_only_the_first_file_part_is_the_upload() -> None:
    got = await read_upload(request(), form(file_part(b"first"), file_part(b"second")))
    try:
        assert got.file is not None and got.file.file.read() == b"first"
    finally:
        got.close()


async def test_a_huge_field_is_cut_to_its_bound() -> None:
    got = await read_upload(request(form(field("caption", b"c" * (FIELD_MAX * 3)))), None)
    assert got.fields["caption"] == "c" * FIELD_MAX


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", b"--x\r\n", id="no-boundary"),
        pytest.param(None, b"garbage", id="no-parts"),
        pytest.param(None, file_part(b"abc")[:-2], id="truncated"),
    ],
)
async def test_a_malformed_body_is_metas_invalid_parameter(
    content_type: str | None, body: bytes
) -> None:
    with pytest.raises(GraphError) as caught:
        await read_upload(request(content_type=content_type), body)
    assert (caught.value.code, caught.value.http_status) == (100, 400)
    assert "multipart/form-data body is malformed" in str(caught.value.envelope())


async def test_the_spooled_file_is_closed_when_the_form_breaks_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spooled: list[Spooled] = []
    real_spool = uploads.spool

    async def keep(part: object) -> Spooled:
        spooled.append(await real_spool(part))  # type: ignore[arg-type]
        return spooled[-1]

    monkeypatch.setattr(uploads, "spool", keep)
    broken = file_part(PNG) + field("type", b"image/png")[:-2]  # no closing boundary
    with pytest.raises(GraphError):
        await read_upload(request(), broken)
    [part] = spooled
    assert part.file.closed
