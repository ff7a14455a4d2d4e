"""Fixtures of the fake Graph API's tests: a SQLite store with a media cassette, an HTTP
client, and fakes started on free ports and stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from graph_client import BLOB
from graph_client import BLOB_MIME
from graph_client import CASSETTE
from graph_client import MEDIA_ID
from graph_client import PHONE_ID
from graph_client import TOKEN
from graph_client import Serve

from pseudowa.proxy.sandbox.graph import FakeGraph
from pseudowa.proxy.sandbox.graph import GraphConfig
from pseudowa.storage.store import CassetteStore


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[CassetteStore]:
    store = CassetteStore.open(f"sqlite:///{tmp_path}/s.db")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def cassette(sqlite_store: CassetteStore) -> str:
    """A cassette with one linked media blob and no recorded sends yet."""
    sqlite_store.create_cassette(CASSETTE, phone_number_ids=[PHONE_ID], graph_api_version="v21.0")
    info = sqlite_store.put_media(BLOB, BLOB_MIME)
    sqlite_store.link_media(CASSETTE, MEDIA_ID, info.sha256)
    return CASSETTE


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start fakes on 127.0.0.1:0; all are stopped after the test."""
    started: list[FakeGraph] = []

    async def _serve(config: GraphConfig | None = None, **kwargs: Any) -> tuple[FakeGraph, str]:
        graph = FakeGraph(config or GraphConfig(access_token=TOKEN), **kwargs)
        base = await graph.start()
        started.append(graph)
        return graph, base

    yield _serve
    for graph in started:
        await graph.stop()
