"""The batch writer on its own: a store, pending exchanges, callbacks; no mitmproxy."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging

import pytest

from pseudowa.addons.writer import MAX_BATCH
from pseudowa.addons.writer import RECORD_SOURCES
from pseudowa.addons.writer import BatchWriter
from pseudowa.addons.writer import NotWritten
from pseudowa.addons.writer import Pending
from pseudowa.addons.writer import RecordMode
from pseudowa.proxy.contract import webhooks as w
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore

USER = "16505551234"
MEDIA_ID = "1037543291543636"
DATA = b"\xff\xd8\xff\xe0 jpeg bytes"


def send_body(to: str = USER) -> bytes:
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": "Yes, in blue."},
        }
    ).encode()


def graph(to: str = USER, *, phone: str = "", version: str | None = None) -> Pending:
    x = Exchange(
        kind=Kind.GRAPH,
        method="POST",
        url="https://graph.facebook.com/v23.0/1/messages",
        request_body=send_body(to),
        response_status=200,
    )
    ids = frozenset({phone}) if phone else frozenset()
    return Pending(Kind.GRAPH, x, [], phone_number_ids=ids, graph_version=version)


def download(media_id: str | None = MEDIA_ID, expected: str | None = None) -> Pending:
    x = Exchange(
        kind=Kind.MEDIA,
        method="GET",
        url="https://lookaside.fbsbx.com/x",
        response_status=200,
        annotations={"mime_type": "image/jpeg"},
    )
    return Pending(
        Kind.MEDIA,
        x,
        [],
        media=DATA,
        media_id=media_id,
        media_mime="image/jpeg",
        expected_sha256=expected,
    )


@pytest.fixture
def store(store: CassetteStore) -> CassetteStore:
    """conftest's store, on each backend, with an empty cassette `c` to write into."""
    store.create_cassette("c")
    return store


def stored(store: CassetteStore) -> list[Exchange]:
    return list(store.interactions("c"))


# -- record modes -------------------------------------------------------------------------


def test_record_modes_are_the_option_values():
    assert RecordMode.names() == ("new", "append", "overwrite")
    assert RecordMode.parse("append") is RecordMode.APPEND
    assert RecordMode.NEW == "new"  # a StrEnum: compares and prints as its value
    assert RECORD_SOURCES == (Source.META, Source.SANDBOX)


def test_record_mode_parse_names_what_was_wrong():
    with pytest.raises(
        ValueError, match=r"invalid pseudowa_mode 'replace': use new, append, overwrite"
    ):
        RecordMode.parse("replace", "pseudowa_mode")
    with pytest.raises(ValueError, match=r"invalid mode ''"):
        RecordMode.parse("")


# -- writing ------------------------------------------------------------------------------


async def test_writes_in_queue_order_and_reports_each(store):
    seen: list[tuple[Kind, int]] = []
    writer = BatchWriter(store, "c", on_written=lambda p, x: seen.append((p.kind, x.seq)))
    futures = [writer.enqueue(graph(f"1650555{i:04d}")) for i in range(3)]
    assert await asyncio.gather(*futures) == [0, 1, 2]
    assert writer.running and writer.queued == 3
    await writer.close()
    assert not writer.running
    assert seen == [(Kind.GRAPH, 0), (Kind.GRAPH, 1), (Kind.GRAPH, 2)]
    assert [json.loads(x.request_body)["to"] for x in stored(store)] == [
        f"1650555{i:04d}" for i in range(3)
    ]


async def test_what_queues_up_together_shares_a_transaction(store, monkeypatch):
    sizes: list[int] = []
    append = CassetteStore.append_many

    def counting(self, name, items, **kw):
        items = list(items)
        sizes.append(len(items))
        return append(self, name, items, **kw)

    monkeypatch.setattr(CassetteStore, "append_many", counting)
    writer = BatchWriter(store, "c")
    first = [writer.enqueue(graph()) for _ in range(MAX_BATCH + 2)]
    await asyncio.gather(*first)
    await writer.enqueue(graph())
    await writer.close()
    assert sizes == [MAX_BATCH, 2, 1]


async def test_a_failed_write_halts_the_writer(store, monkeypatch):
    failures: list[Exception] = []
    writer = BatchWriter(store, "c", on_failed=failures.append)
    calls: list[int] = []

    def broken(self, name, items, **kw):
        calls.append(len(list(items)))
        raise StoreError("disk full")

    monkeypatch.setattr(CassetteStore, "append_many", broken)
    results = await asyncio.gather(
        *(writer.enqueue(graph()) for _ in range(3)), return_exceptions=True
    )
    assert isinstance(results[0], StoreError)  # the write that failed gets its error
    assert all(isinstance(r, NotWritten) for r in results[1:])  # the rest were not tried
    later = await asyncio.gather(writer.enqueue(graph()), return_exceptions=True)
    assert isinstance(later[0], NotWritten)
    await writer.close()
    assert calls == [3] and len(failures) == 1 and str(failures[0]) == "disk full"


async def test_halt_lets_what_is_queued_go_ahead(store):
    writer = BatchWriter(store, "c")
    before = [writer.enqueue(graph()) for _ in range(2)]
    writer.halt()
    after = writer.enqueue(graph())
    assert await asyncio.gather(*before) == [0, 1]
    with pytest.raises(NotWritten):
        await after
    await writer.close()
    assert len(stored(store)) == 2


async def test_a_detached_writer_fails_what_is_still_queued(store):
    failures: list[Exception] = []
    writer = BatchWriter(store, "c", on_failed=failures.append)
    queued = writer.enqueue(graph())
    writer.detach()
    with pytest.raises(StoreError, match="the cassette store is closed"):
        await queued
    await asyncio.sleep(0)
    assert not writer.running and len(failures) == 1


async def test_a_failing_callback_does_not_stop_the_writer(store, caplog):
    def explode(pending, exchange):
        raise RuntimeError("printer on fire")

    writer = BatchWriter(store, "c", on_written=explode)
    assert await writer.enqueue(graph()) == 0
    assert await writer.enqueue(graph()) == 1
    await writer.close()
    assert "on_written callback failed" in caplog.text


# -- media and cassette metadata ------------------------------------------------------------


def test_a_download_is_stored_once_as_a_blob(store):
    sha = hashlib.sha256(DATA).hexdigest()
    writer = BatchWriter(store, "c")
    written, error = writer.write_batch([graph(), download(expected=sha), graph()])
    assert error is None
    assert [x.seq for x in written] == [0, 1, 2]
    media = stored(store)[1]
    assert media.response_body == b"" and media.annotations["sha256"] == "match"
    link = store.media("c", MEDIA_ID)
    assert (link.sha256, link.mime_type, link.size) == (sha, "image/jpeg", len(DATA))


def test_a_download_checked_against_the_webhook_announcement(store, caplog):
    body = w.dumps(
        w.inbound_webhook(
            w.BusinessAccount(),
            w.message(
                "image",
                USER,
                w.media_body("image", MEDIA_ID, "image/jpeg", w.sha256_b64(b"other")),
                wamid="wamid.in1",
                timestamp="1749416383",
            ),
        )
    )
    hook = Exchange(
        kind=Kind.WEBHOOK,
        method="POST",
        url="http://127.0.0.1:8000/webhook",
        request_body=body,
        response_status=200,
    )
    events = w.events(w.parse(body))
    writer = BatchWriter(store, "c")
    with caplog.at_level(logging.WARNING):
        written, error = writer.write_batch([Pending(Kind.WEBHOOK, hook, list(events)), download()])
    assert error is None and written[1].annotations["sha256"] == "mismatch"
    assert f"media {MEDIA_ID}: downloaded bytes have sha256" in caplog.text


def test_a_download_without_media_id_keeps_its_bytes(store):
    written, error = BatchWriter(store, "c").write_batch([download(media_id=None)])
    assert error is None
    (x,) = stored(store)
    assert x.response_body == DATA and x.annotations["sha256"] == "unknown"
    assert written[0].annotations["sha256"] == "unknown"


def test_the_cassette_notes_phone_number_ids_and_the_graph_version(store, monkeypatch):
    writer = BatchWriter(store, "c")
    updates: list[dict[str, object]] = []
    update = CassetteStore.update_cassette

    def noting(self, name, **kw):
        updates.append(kw)
        return update(self, name, **kw)

    monkeypatch.setattr(CassetteStore, "update_cassette", noting)
    writer.write_batch(
        [
            graph(phone="106540352242922", version="v22.0"),
            graph(phone="106540352242922", version="v23.0"),
        ]
    )
    writer.write_batch([graph(phone="106540352242922", version="v23.0")])  # nothing new
    info = store.get_cassette("c")
    assert info.phone_number_ids == ("106540352242922",) and info.graph_api_version == "v23.0"
    assert len(updates) == 1


def test_a_batch_stops_at_the_first_error(store):
    writer = BatchWriter(store, "gone")
    written, error = writer.write_batch([graph(), graph()])
    assert written == [] and isinstance(error, StoreError)


async def test_batched_append_stores_what_a_single_append_stores(store_url):
    """The store's executemany path and its one-row path give back the same exchange."""
    x = Exchange(
        kind="graph",
        method="POST",
        url="https://graph.facebook.com/v23.0/1/messages",
        request_headers=[("Content-Type", "application/json"), ("X-Dup", "a"), ("X-Dup", "b")],
        request_body=send_body(),
        response_status=400,
        response_headers=[("Content-Type", "application/json")],
        response_body=b'{"error":1}',
        error="boom",
        started_at=1749416383.25,
        finished_at=1749416383.5,
        annotations={"media_id": MEDIA_ID},
    )
    with CassetteStore.open(store_url) as store:
        store.create_cassette("fast")
        store.create_cassette("slow")
        store.append("slow", x)
        assert store.append_many("fast", [x, x]) == [0, 1]
        assert store.append_many("fast", [x]) == [2]
        with pytest.raises(StoreError, match="no cassette named 'gone'"):
            store.append_many("gone", [x])
        fast, slow = list(store.interactions("fast")), list(store.interactions("slow"))
    assert [e.seq for e in fast] == [0, 1, 2]
    assert fast[0] == slow[0] == dataclasses.replace(x, seq=0)
