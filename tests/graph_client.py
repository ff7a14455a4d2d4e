"""What the fake Graph API's tests share: the test account and token, a send listener,
and small clients for sends, media look-ups and uploads (tests/openapi.py checks errors)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import aiohttp
from openapi import validate

from pseudowa.proxy.contract.outbound import MarkRead
from pseudowa.proxy.contract.outbound import SendRequest
from pseudowa.proxy.contract.webhooks import BusinessAccount
from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.storage.records import Exchange
from pseudowa.storage.store import CassetteStore

ACCOUNT = BusinessAccount()
PHONE_ID = ACCOUNT.phone_number_id
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CASSETTE = "rec"
MEDIA_ID = "1037543291543636"
BLOB = bytes(range(256)) * 40
BLOB_MIME = "image/jpeg"
RECORDED_URL = f"https://graph.facebook.com/v21.0/{PHONE_ID}/messages"
TO = "16505551234"

Serve = Callable[..., Awaitable[tuple[FakeGraph, str]]]  # the `serve` fixture


class Listener:
    def __init__(self) -> None:
        self.sends: list[tuple[SendRequest, str, bool]] = []
        self.reads: list[MarkRead] = []

    def on_send(self, send: SendRequest, wamid: str, recorded: bool) -> None:
        self.sends.append((send, wamid, recorded))

    def on_mark_read(self, mark: MarkRead) -> None:
        self.reads.append(mark)


# -- helpers -----------------------------------------------------------------------------


def text(body: str, to: str = TO) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def record_send(
    store: CassetteStore,
    body: dict[str, Any],
    status: int,
    answer: dict[str, Any],
    content_type: str = "application/json; charset=UTF-8",
) -> None:
    store.append(
        CASSETTE,
        Exchange(
            kind="graph",
            method="POST",
            url=RECORDED_URL,
            request_headers=[("Content-Type", "application/json")],
            request_body=json.dumps(body).encode(),
            response_status=status,
            response_headers=[("Content-Type", content_type)],
            response_body=json.dumps(answer).encode(),
        ),
    )


async def send(
    http: aiohttp.ClientSession,
    base: str,
    body: dict[str, Any] | bytes,
    *,
    version: str = "/v21.0",
    phone: str = PHONE_ID,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        f"{base}{version}/{phone}/messages",
        data=raw,
        headers={"Content-Type": "application/json", **(AUTH if headers is None else headers)},
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def assert_graph_error(
    status: int, headers: dict[str, str], body: Any, code: int, http_status: int
) -> None:
    validate("GraphAPIError", body)
    assert status == http_status, body
    assert body["error"]["code"] == code, body
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["fbtrace_id"] == headers["x-fb-trace-id"]


async def media_url(http: aiohttp.ClientSession, base: str, media_id: str = MEDIA_ID) -> str:
    async with http.get(f"{base}/v21.0/{media_id}", headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["url"])


async def upload(
    http: aiohttp.ClientSession,
    base: str,
    data: Any,
    mime: str = "image/png",
    *,
    product: str | None = "whatsapp",
    with_file: bool = True,
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    if product is not None:
        form.add_field("messaging_product", product)
    if with_file:
        form.add_field("file", data, content_type=mime, filename="upload.bin")
    form.add_field("type", mime)
    async with http.post(f"{base}/v21.0/{PHONE_ID}/media", data=form, headers=AUTH) as resp:
        return resp.status, await resp.json()
