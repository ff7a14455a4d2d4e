"""The plain records that cross the store's boundary."""

from __future__ import annotations

from dataclasses import dataclass

from pseudowa.storage.records import Event
from pseudowa.storage.records import EventData
from pseudowa.storage.records import Exchange
from pseudowa.storage.records import Kind
from pseudowa.storage.records import Source


@dataclass(frozen=True)
class _ForeignEvent:
    """Any object with the EventLike fields, as the contract's WebhookEvent is."""

    wamid: str | None = "wamid.1"
    category: str = "status"
    type: str | None = "read"
    sender: str | None = None
    recipient: str | None = "1555"
    media_id: str | None = None
    media_sha256: str | None = None
    timestamp: str | None = "1700000000"
    position: int = 1
    unrelated: str = "ignored"


def test_kinds_and_sources_compare_as_their_strings() -> None:
    assert Kind.WEBHOOK == "webhook" and str(Kind.MEDIA) == "media"
    assert [s.value for s in Source] == ["meta", "sandbox", "imported", "mutated", "replay"]


def test_indexed_event_copies_an_event_like_and_adds_its_seq() -> None:
    event = Event.indexed(_ForeignEvent(), 5)
    assert event == Event(
        wamid="wamid.1", category="status", type="read", recipient="1555",
        timestamp="1700000000", position=1, interaction_seq=5,
    )  # fmt: skip
    assert isinstance(event, EventData)


def test_exchange_duration_is_never_negative() -> None:
    ok = Exchange("graph", "GET", "u", started_at=1.0, finished_at=1.25)
    assert ok.duration == 0.25 and ok.seq == -1
    assert Exchange("graph", "GET", "u", started_at=2.0, finished_at=1.0).duration == 0.0
