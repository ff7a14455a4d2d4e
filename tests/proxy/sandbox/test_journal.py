"""The run journal: nothing recorded is lost, reordered or silently dropped."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from pseudowa.proxy.contract import webhooks as w
from pseudowa.proxy.sandbox.journal import Journal
from pseudowa.storage.errors import StoreError
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.store import CassetteStore

ACCOUNT = w.BusinessAccount()
USER = "16505551234"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CassetteStore]:
    s = CassetteStore.open(f"sqlite:///{tmp_path}/j.db")
    s.create_cassette("run", source="sandbox")
    try:
        yield s
    finally:
        s.close()


def graph(i: int) -> Exchange:
    return Exchange(
        kind=Kind.GRAPH,
        method="POST",
        url=f"https://graph.facebook.com/v23.0/106540352242922/messages?i={i}",
        request_headers=[("content-type", "application/json")],
        request_body=b'{"messaging_product":"whatsapp","i":%d}' % i,
        response_status=200,
        response_body=b'{"ok":true}',
        started_at=1_750_000_000.0 + i,
        finished_at=1_750_000_000.5 + i,
        annotations={"i": str(i)},
    )


def webhook(i: int) -> tuple[Exchange, list[EventData]]:
    msg = w.message(
        "image",
        USER,
        w.media_body("image", f"{i:016d}", "image/jpeg", "aGk="),
        wamid=f"wamid.in{i}",
        timestamp="1750000000",
    )
    payload = w.merge(
        [
            w.inbound_webhook(ACCOUNT, msg),
            w.status_webhook(
                ACCOUNT, [w.status(f"wamid.out{i}", "read", USER, timestamp="1750000001")]
            ),
        ]
    )
    body = w.dumps(payload)
    x = Exchange(
        kind=Kind.WEBHOOK,
        method="POST",
        url="http://bot/webhook",
        request_body=body,
        response_status=200,
        started_at=float(i),
        finished_at=float(i),
    )
    return x, w.events(w.parse(body))  # type: ignore[return-value]


def stored(store: CassetteStore, name: str = "run") -> list[Exchange]:
    return list(store.interactions(name))


def same(a: Exchange, b: Exchange) -> bool:
    return dataclasses.replace(a, seq=-1) == dataclasses.replace(b, seq=-1)


async def test_contract_events_are_indexed_with_every_field(store: CassetteStore) -> None:
    # The journal hands the contract's WebhookEvent to the store as it is (EventLike).
    ev = w.WebhookEvent(
        category="message",
        type="image",
        wamid="wamid.a",
        sender=USER,
        recipient=None,
        media_id="1111222233334444",
        media_sha256="aGk=",
        timestamp="1750000000",
        position=0,
        phone_number_id="106",
    )
    st = w.WebhookEvent(
        category="status",
        type="read",
        wamid="wamid.b",
        recipient=USER,
        timestamp="1750000001",
        position=1,
    )
    journal = Journal(store, "run")
    journal.record(webhook(0)[0], [ev, st])
    await journal.close()
    assert [
        EventData(
            e.wamid,
            e.category,
            e.type,
            e.sender,
            e.recipient,
            e.media_id,
            e.media_sha256,
            e.timestamp,
            e.position,
        )
        for e in store.events("run")
    ] == [
        EventData(
            wamid="wamid.a",
            category="message",
            type="image",
            sender=USER,
            recipient=None,
            media_id="1111222233334444",
            media_sha256="aGk=",
            timestamp="1750000000",
            position=0,
        ),
        EventData(
            wamid="wamid.b",
            category="status",
            type="read",
            sender=None,
            recipient=USER,
            media_id=None,
            media_sha256=None,
            timestamp="1750000001",
            position=1,
        ),
    ]


async def test_journal_without_store_keeps_order() -> None:
    journal = Journal()
    items = [graph(i) for i in range(50)]
    for x in items:
        journal.record(x)
    assert journal.exchanges == items
    await journal.close()
    assert journal.exchanges == items


def test_journal_without_store_needs_no_event_loop() -> None:
    journal = Journal()
    journal.record(graph(0))
    assert len(journal.exchanges) == 1


async def test_journal_persists_exchanges_and_events_in_order(store: CassetteStore) -> None:
    journal = Journal(store, "run")
    expected: list[Exchange] = []
    for i in range(20):
        if i % 2:
            x, events = webhook(i)
            assert len(events) == 2
            journal.record(x, events)
        else:
            x = graph(i)
            journal.record(x)
        expected.append(x)
        await asyncio.sleep(0)  # let the writer run between some records
    await journal.close()
    rows = stored(store)
    assert [r.seq for r in rows] == list(range(20))
    assert all(same(r, x) for r, x in zip(rows, expected, strict=True))
    assert journal.exchanges == expected

    events = store.events("run")
    assert [(e.interaction_seq, e.category, e.wamid) for e in events[:2]] == [
        (1, "message", "wamid.in1"),
        (1, "status", "wamid.out1"),
    ]
    assert len(events) == 20
    [hit] = store.events("run", media_id=f"{7:016d}")
    assert (hit.interaction_seq, hit.sender, hit.media_sha256, hit.timestamp, hit.position) == (
        7,
        USER,
        "aGk=",
        "1750000000",
        0,
    )


async def test_burst_of_1000_is_written_whole_and_in_order(store: CassetteStore) -> None:
    journal = Journal(store, "run")
    burst = [graph(i) for i in range(1_000)]
    for x in burst:  # no await between records: all queue up before the writer runs
        journal.record(x)
    await journal.close()
    rows = stored(store)
    assert len(rows) == 1_000
    assert [r.annotations["i"] for r in rows] == [str(i) for i in range(1_000)]
    assert [r.seq for r in rows] == list(range(1_000))
    assert same(rows[-1], burst[-1])


async def test_journal_can_be_reused_after_close(store: CassetteStore) -> None:
    journal = Journal(store, "run")
    for i in range(3):
        journal.record(graph(i))
    await journal.close()
    for i in range(3, 6):
        journal.record(graph(i))
    await journal.close()
    await journal.close()  # idempotent
    assert [r.annotations["i"] for r in stored(store)] == [str(i) for i in range(6)]


async def test_failed_write_raises_on_close(store: CassetteStore) -> None:
    journal = Journal(store, "run")
    journal.record(graph(0))
    store.delete_cassette("run")  # before the writer had a chance to flush
    journal.record(graph(1))
    with pytest.raises(StoreError):
        await journal.close()
    assert len(journal.exchanges) == 2  # still in memory for the report
    assert isinstance(journal.error, StoreError)


async def test_failure_mid_run_is_not_lost(store: CassetteStore) -> None:
    journal = Journal(store, "run")
    journal.record(graph(0))
    for _ in range(500):  # wait until the first batch is written
        if stored(store):
            break
        await asyncio.sleep(0.01)
    assert len(stored(store)) == 1
    store.delete_cassette("run")
    store.create_cassette("other")
    journal.record(graph(1))
    with pytest.raises(StoreError):
        await journal.close()
    with pytest.raises(StoreError):  # a second close does not pretend all is well
        await journal.close()
