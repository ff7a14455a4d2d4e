"""The fake Graph API's media over real sockets: look-ups, downloads, uploads, deletes.

Every success and error body is checked against Meta's OpenAPI schemas
(tests/openapi.py). The harness is shared with test_graph.py through tests/graph_client.py and
this folder's conftest.py.
"""

from __future__ import annotations

import hashlib
import re
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# tests/ is on sys.path (rootdir conftest, no __init__.py), so the schema helper
# imports by its module name.
from graph_client import AUTH
from graph_client import BLOB
from graph_client import BLOB_MIME
from graph_client import MEDIA_ID
from graph_client import PHONE_ID
from graph_client import TO
from graph_client import TOKEN
from graph_client import Listener
from graph_client import Serve
from graph_client import assert_graph_error
from graph_client import media_url
from graph_client import send
from graph_client import upload
from openapi import validate

from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.errors import MediaNotFound
from pseudowa.storage.store import CassetteStore

# -- media -------------------------------------------------------------------------------


async def test_media_metadata_and_download(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    lookup = f"{base}/v21.0/{MEDIA_ID}?phone_number_id={PHONE_ID}"
    async with http.get(lookup, headers=AUTH) as resp:
        assert resp.status == 200
        meta = await resp.json()
    assert list(meta) == ["messaging_product", "url", "mime_type", "sha256", "file_size", "id"]
    assert meta["messaging_product"] == "whatsapp"
    assert meta["id"] == MEDIA_ID and meta["mime_type"] == BLOB_MIME
    assert meta["file_size"] == str(len(BLOB))
    assert meta["sha256"] == hashlib.sha256(BLOB).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", meta["sha256"])
    assert meta["url"].startswith(f"{base}/whatsapp_business/attachments/?mid={MEDIA_ID}&ext=")
    async with http.get(meta["url"], headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == BLOB_MIME
        assert resp.headers["Content-Length"] == str(len(BLOB))
        assert await resp.read() == BLOB


async def test_media_lookup_for_another_number_or_unknown_id(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    for path in (f"/v21.0/{MEDIA_ID}?phone_number_id=555", "/v21.0/424242424242"):
        async with http.get(base + path, headers=AUTH) as resp:
            answer = await resp.json()
            assert_graph_error(resp.status, dict(resp.headers), answer, 100, 400)
            assert answer["error"]["error_subcode"] == 33
            assert answer["error"]["type"] == "GraphMethodException"


async def test_public_base_url_is_used_for_media_urls(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    config = GraphConfig(access_token=TOKEN, public_base_url="https://lookaside.example/")
    _, base = await serve(config, store=sqlite_store, cassette=cassette)
    url = await media_url(http, base)
    assert url.startswith("https://lookaside.example/whatsapp_business/attachments/?mid=")


async def test_download_refusals(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    url = await media_url(http, base)
    async with http.get(url) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 190, 401)
    forged = re.sub(r"hash=[0-9a-f]+", "hash=" + "0" * 40, url)
    edited = url.replace(f"mid={MEDIA_ID}", "mid=1111111111111111")
    for bad in (forged, edited, f"{base}/whatsapp_business/attachments/"):
        async with http.get(bad, headers=AUTH) as resp:
            assert resp.status == 404
            validate("GraphAPIError", await resp.json())

    _, base0 = await serve(
        GraphConfig(access_token=TOKEN, media_ttl_s=0), store=sqlite_store, cassette=cassette
    )
    expired = await media_url(http, base0)
    async with http.get(expired, headers=AUTH) as resp:
        assert resp.status == 404
        validate("GraphAPIError", await resp.json())


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "memory"])
async def test_upload_send_download_delete(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, with_store: bool
) -> None:
    listener = Listener()
    graph, base = await serve(store=sqlite_store if with_store else None, listener=listener)
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    status, answer = await upload(http, base, data)
    assert status == 200 and list(answer) == ["id"] and answer["id"].isdigit()
    media_id = answer["id"]

    status, _, sent = await send(
        http,
        base,
        {"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": media_id}},
    )
    assert status == 200, sent
    assert listener.sends[-1][0].media_id == media_id

    async with http.get(f"{base}/v21.0/{media_id}", headers=AUTH) as resp:
        meta = await resp.json()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["file_size"] == str(len(data)) and meta["mime_type"] == "image/png"
    async with http.get(meta["url"], headers=AUTH) as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == data

    async with http.delete(f"{base}/v21.0/{media_id}", headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"success": True})
    async with http.get(f"{base}/v21.0/{media_id}", headers=AUTH) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 100, 400)
    async with http.get(meta["url"], headers=AUTH) as resp:
        assert resp.status == 404
    async with http.delete(f"{base}/v21.0/{media_id}", headers=AUTH) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 100, 400)
    status, headers, sent = await send(
        http,
        base,
        {"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": media_id}},
    )
    assert_graph_error(status, headers, sent, 131053, 400)


async def test_delete_cassette_media_hides_it_for_the_run(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, cassette: str
) -> None:
    _, base = await serve(store=sqlite_store, cassette=cassette)
    async with http.delete(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"success": True})
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 400
    assert sqlite_store.media(cassette, MEDIA_ID).media_id == MEDIA_ID  # the cassette is untouched


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        pytest.param({"with_file": False}, 131008, id="missing-file"),
        pytest.param({"product": None}, 131008, id="missing-messaging-product"),
        pytest.param({"product": "telegram"}, 131009, id="wrong-messaging-product"),
    ],
)
async def test_upload_validation(
    serve: Serve, http: aiohttp.ClientSession, kwargs: dict[str, Any], code: int
) -> None:
    graph, base = await serve()
    status, answer = await upload(http, base, b"bytes", **kwargs)
    validate("GraphAPIError", answer)
    assert (status, answer["error"]["code"]) == (400, code)
    assert graph.uploads == {}


async def test_upload_must_be_multipart(serve: Serve, http: aiohttp.ClientSession) -> None:
    _, base = await serve()
    async with http.post(
        f"{base}/v21.0/{PHONE_ID}/media", json={"messaging_product": "whatsapp"}, headers=AUTH
    ) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 131008, 400)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", b"--x\r\n", id="no-boundary"),
        pytest.param("multipart/form-data; boundary=xyz", b"garbage", id="no-parts"),
        pytest.param(
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
            id="truncated",
        ),
    ],
)
async def test_malformed_multipart_is_a_400_not_a_500(
    serve: Serve, http: aiohttp.ClientSession, content_type: str, body: bytes
) -> None:
    _, base = await serve()
    async with http.post(
        f"{base}/v21.0/{PHONE_ID}/media", data=body, headers={**AUTH, "Content-Type": content_type}
    ) as resp:
        assert_graph_error(resp.status, dict(resp.headers), await resp.json(), 100, 400)


async def test_large_upload_and_download_stream_in_bounded_memory(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, tmp_path: Path
) -> None:
    size = 100 * (1 << 20)
    source = tmp_path / "big.mp4"
    digest = hashlib.sha256()
    with source.open("wb") as fh:
        block = bytes(range(256)) * 4096  # 1 MiB
        for i in range(size // len(block)):
            chunk = i.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            fh.write(chunk)
    _, base = await serve(store=sqlite_store)

    tracemalloc.start()
    try:
        with source.open("rb") as fh:
            status, answer = await upload(http, base, fh, "video/mp4")
        assert status == 200, answer
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        url = await media_url(http, base, answer["id"])
        got = hashlib.sha256()
        received = 0
        async with http.get(url, headers=AUTH) as resp:
            assert resp.headers["Content-Length"] == str(size)
            async for chunk in resp.content.iter_chunked(1 << 16):
                got.update(chunk)
                received += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size and got.hexdigest() == digest.hexdigest()
    assert upload_peak < 32 << 20, upload_peak
    assert download_peak < 32 << 20, download_peak


# -- media a simulated user sent (add_media) -----------------------------------------------


def image_send(media_id: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": TO, "type": "image", "image": {"id": media_id}}


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "memory"])
async def test_add_media_serves_what_a_user_sent(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore, with_store: bool
) -> None:
    graph, base = await serve(store=sqlite_store if with_store else None)
    data = b"\xff\xd8\xff" + bytes(range(256)) * 8
    media = await graph.add_media(data, "image/jpeg")
    assert media.media_id.isdigit() and media.sha256 == hashlib.sha256(data).hexdigest()
    assert (media.size, media.mime_type) == (len(data), "image/jpeg")
    assert (media.data is None) is with_store  # in the blob store when there is one

    lookup = f"{base}/v21.0/{media.media_id}?phone_number_id={PHONE_ID}"
    async with http.get(lookup, headers=AUTH) as resp:
        assert resp.status == 200
        meta = await resp.json()
    assert (meta["id"], meta["sha256"], meta["file_size"], meta["mime_type"]) == (
        media.media_id,
        media.sha256,
        str(len(data)),
        "image/jpeg",
    )
    async with http.get(meta["url"], headers=AUTH) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert await resp.read() == data
    # The bot may send it on, like any media id of the run; it is no upload of the bot's.
    assert (await send(http, base, image_send(media.media_id)))[0] == 200
    assert graph.uploads == {}
    assert (await graph.add_media(data, "image/jpeg")).media_id != media.media_id


async def test_added_media_are_linked_to_the_run(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore
) -> None:
    sqlite_store.create_cassette("run", source="sandbox")
    journal = Journal(sqlite_store, "run")
    graph, _ = await serve(journal=journal)  # blobs go to the journal's store
    media = await graph.add_media(b"user photo", "image/png")
    await journal.close()
    link = sqlite_store.media("run", media.media_id)
    assert (link.sha256, link.mime_type, link.size) == (media.sha256, "image/png", 10)


async def test_run_media_survive_a_cassette_switch(
    serve: Serve,
    http: aiohttp.ClientSession,
    sqlite_store: CassetteStore,
    cassette: str,
    tmp_path: Path,
) -> None:
    graph, base = await serve(store=sqlite_store, cassette=cassette)
    user = await graph.add_media(b"user photo", "image/png")
    status, uploaded = await upload(http, base, b"bot upload", "text/plain")
    assert status == 200
    async with http.delete(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 200

    other = CassetteStore.open(f"sqlite:///{tmp_path}/other.db")
    try:
        other.create_cassette("other", phone_number_ids=[PHONE_ID])
        await graph.use_cassette(other, "other")
        # Their bytes stay in the store they went to, not the new cassette's.
        for media_id, data in ((user.media_id, b"user photo"), (uploaded["id"], b"bot upload")):
            url = await media_url(http, base, media_id)
            async with http.get(url, headers=AUTH) as resp:
                assert (resp.status, await resp.read()) == (200, data)
        assert list(graph.uploads) == [uploaded["id"]]
        async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
            assert resp.status == 400  # the old cassette's media went with it
    finally:
        other.close()

    # Back to the first cassette: what the bot deleted of it is there again.
    await graph.use_cassette(sqlite_store, cassette)
    async with http.get(f"{base}/v21.0/{MEDIA_ID}", headers=AUTH) as resp:
        assert resp.status == 200


async def test_uploads_link_to_the_journal_of_the_moment(
    serve: Serve, http: aiohttp.ClientSession, sqlite_store: CassetteStore
) -> None:
    for name in ("run1", "run2"):
        sqlite_store.create_cassette(name, source="sandbox")
    first, second = Journal(sqlite_store, "run1"), Journal(sqlite_store, "run2")
    graph, base = await serve(store=sqlite_store, journal=first)
    _, a = await upload(http, base, b"first")
    graph.journal = second
    _, b = await upload(http, base, b"second")
    await first.close()
    await second.close()
    assert sqlite_store.media("run1", a["id"]).size == len(b"first")
    assert sqlite_store.media("run2", b["id"]).size == len(b"second")
    with pytest.raises(MediaNotFound):
        sqlite_store.media("run1", b["id"])
