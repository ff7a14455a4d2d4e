"""EventLike and the records around it, beyond test_records.py: the contract's real
WebhookEvent is indexed field for field, the enums' full values, Exchange's defaults."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from datetime import timezone
from pathlib import Path

import pytest

from pseudowa.proxy.contract.webhooks import WebhookEvent
from pseudowa.storage.records import CassetteInfo
from pseudowa.storage.records import Event
from pseudowa.storage.records import EventData
from pseudowa.storage.records import EventLike
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source
from pseudowa.storage.store import CassetteStore

PROTOCOL_FIELDS = {
    "wamid",
    "category",
    "type",
    "sender",
    "recipient",
    "media_id",
    "media_sha256",
    "timestamp",
    "position",
}


def test_kind_values() -> None:
    assert [k.value for k in Kind] == ["webhook", "graph", "media"]
    assert Kind.GRAPH == "graph"
    assert f"{Kind.WEBHOOK}" == "webhook"  # prints and stores as the plain string


def test_source_values() -> None:
    assert {s.value for s in Source} == {"meta", "sandbox", "imported", "mutated", "replay"}
    assert Source("sandbox") is Source.SANDBOX
    with pytest.raises(ValueError):
        Source("tape")


def test_exchange_defaults_and_immutability() -> None:
    x = Exchange(Kind.MEDIA, "GET", "https://lookaside.fbsbx.com/x")
    assert (x.request_body, x.response_body, x.response_status, x.error) == (b"", b"", None, None)
    assert x.seq == -1  # not stored yet
    assert x.request_headers == [] and x.annotations == {}
    assert x.request_headers is not Exchange("graph", "GET", "u").request_headers
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(x, "url", "elsewhere")


def _fields(e: object) -> dict[str, object]:
    return {name: getattr(e, name) for name in PROTOCOL_FIELDS}


def _protocol_members() -> set[str]:
    return {name for name in vars(EventLike) if not name.startswith("_")}


def test_event_like_names_the_fields_the_store_reads() -> None:
    assert _protocol_members() == PROTOCOL_FIELDS


@pytest.mark.parametrize("cls", [EventData, WebhookEvent])
def test_both_event_classes_have_every_event_like_field(cls: type) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    assert PROTOCOL_FIELDS <= names


def _webhook_event() -> WebhookEvent:
    return WebhookEvent(
        category="message",
        type="image",
        wamid="wamid.HBgL",
        sender="16505551234",
        media_id="1234",
        media_sha256="Zm9v",
        timestamp="1700000000",
        position=2,
        phone_number_id="106540352242922",
    )


def _event_data() -> EventData:
    return EventData(
        wamid="wamid.S",
        category="status",
        type="delivered",
        recipient="16505551234",
        timestamp="1700000001",
        position=1,
    )


@pytest.mark.parametrize("make", [_webhook_event, _event_data])
def test_indexed_copies_every_field(make: object) -> None:
    source: EventLike = make()  # type: ignore[operator]
    e = Event.indexed(source, 7)
    assert e.interaction_seq == 7
    assert _fields(e) == _fields(source)
    assert isinstance(e, EventData)


def test_indexed_fields_are_all_the_events_fields() -> None:
    # A field added to EventData but not copied by indexed would be lost on the way.
    names = {f.name for f in dataclasses.fields(Event)}
    assert names == PROTOCOL_FIELDS | {"interaction_seq"}


def test_the_store_indexes_a_webhook_event_as_it_is(tmp_path: Path) -> None:
    with CassetteStore.open(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.create_cassette("c")
        seq = store.append(
            "c",
            Exchange(Kind.WEBHOOK, "POST", "http://bot/webhook", started_at=1.0, finished_at=1.5),
            [_webhook_event(), _event_data()],
        )
        events = store.events("c")
    assert sorted(events, key=lambda e: e.position) == [
        Event.indexed(_event_data(), seq),
        Event.indexed(_webhook_event(), seq),
    ]


def test_cassette_info_counts_default_to_zero() -> None:
    info = CassetteInfo("c", datetime(2024, 1, 1, tzinfo=timezone.utc), "meta", "", None, ())
    assert (info.interaction_count, info.event_count, info.media_count) == (0, 0, 0)
